// CometD JavaScript client (npm `cometd` + `cometd-nodejs-client`) driven line by line by pytest.
//
//   node client.mjs --url http://127.0.0.1:PORT/cometd --transport websocket|long-polling \
//                   --channel /chat/demo [--channel /other] [--max-runtime-ms 60000] [--log-level info]
//                   [--token TOKEN]
//
// Protocol: one JSON object per line.
//   stdout (events):  {"event": "...", ...}   -- nothing else is ever written to stdout.
//   stdin (commands): {"cmd": "subscribe"|"unsubscribe"|"publish"|"status"|"disconnect"|"exit", ...}
//   stderr: CometD's own log output plus one {"wire": "in"|"out", "message": {...}} line per Bayeux
//           message, for diagnosis (pytest prints the tail of it when a test fails).
//
// The channels given with --channel are (re)subscribed in the /meta/handshake listener on every
// successful handshake, which is how CometD applications are supposed to survive a re-handshake
// (the client clears its subscriptions when it handshakes again, e.g. after 402::session_unknown).
//
// --token TOKEN: every handshake (the first one and any re-handshake) carries ext: {token: TOKEN},
// the way a logged-in agent authenticates its CometD session with its REST session id.
//
// The script never hangs: it exits by itself after --max-runtime-ms, when stdin is closed, or
// after {"cmd":"disconnect"} / {"cmd":"exit"}.

import {Console} from "node:console";
import {createRequire} from "node:module";
import * as readline from "node:readline";
import {parseArgs} from "node:util";

import {adapt} from "cometd-nodejs-client";
import {CometD, Extension} from "cometd";

const {values: args} = parseArgs({
    options: {
        url: {type: "string"},
        transport: {type: "string", default: "websocket"},
        channel: {type: "string", multiple: true, default: []},
        "max-runtime-ms": {type: "string", default: "60000"},
        "log-level": {type: "string", default: "info"},
        token: {type: "string"},
    },
});

function emit(event) {
    // Pipes are synchronous on Linux, so the line is out before any process.exit() below.
    process.stdout.write(JSON.stringify(event) + "\n");
}

function exit(code) {
    clearTimeout(deadline);
    process.exit(code);
}

const maxRuntime = Number.parseInt(args["max-runtime-ms"], 10);
const deadline = setTimeout(() => {
    emit({event: "fatal", error: `max runtime of ${maxRuntime} ms exceeded`});
    exit(3);
}, maxRuntime);

if (!args.url || !["websocket", "long-polling"].includes(args.transport)) {
    emit({event: "fatal", error: "usage: --url URL --transport websocket|long-polling [--channel C]..."});
    exit(2);
}

process.on("uncaughtException", (x) => {
    emit({event: "fatal", error: "uncaught exception: " + (x && x.stack ? x.stack : String(x))});
    exit(4);
});

// adapt() installs window.XMLHttpRequest / window.WebSocket (and a per-process cookie jar).
adapt();
// adapt() points window.console at the global console, which writes to stdout: keep stdout clean.
const stderrConsole = new Console({stdout: process.stderr, stderr: process.stderr});
globalThis.window.console = stderrConsole;
globalThis.console = stderrConsole;

const require = createRequire(import.meta.url);
const versions = {
    node: process.version,
    cometd: require("cometd/package.json").version,
    "cometd-nodejs-client": require("cometd-nodejs-client/package.json").version,
};

const cometd = new CometD();
if (args.transport === "long-polling") {
    // Without this the client would negotiate websocket, its first preference.
    if (!cometd.unregisterTransport("websocket")) {
        emit({event: "fatal", error: "could not unregister the websocket transport"});
        exit(2);
    }
}
cometd.configure({url: args.url, logLevel: args["log-level"]});

class WireLog extends Extension {
    incoming(message) {
        process.stderr.write(JSON.stringify({wire: "in", message}) + "\n");
        return message;
    }

    outgoing(message) {
        process.stderr.write(JSON.stringify({wire: "out", message}) + "\n");
        return message;
    }
}
cometd.registerExtension("wire-log", new WireLog());

function transportType() {
    const transport = cometd.getTransport();
    return transport ? transport.type : null;
}

const wanted = new Set(args.channel);   // channels to (re)subscribe after every handshake
const subscriptions = new Map();        // channel -> subscription handle

function subscribe(channel) {
    const handle = cometd.subscribe(channel, (message) => {
        emit({
            event: "message",
            channel: message.channel,
            data: message.data,
            subscription: channel,
            clientId: cometd.getClientId(),
            transport: transportType(),
        });
    }, (reply) => {
        emit({
            event: "subscribed",
            channel,
            successful: reply.successful === true,
            error: reply.error,
            clientId: cometd.getClientId(),
            transport: transportType(),
        });
    });
    subscriptions.set(channel, handle);
}

cometd.onTransportException = (failure, oldTransport, newTransport) => {
    emit({event: "transport_exception", from: oldTransport, to: newTransport, reason: failure && failure.reason});
};

cometd.addListener("/meta/handshake", (reply) => {
    emit({
        event: "handshake",
        successful: reply.successful === true,
        reestablish: reply.reestablish === true,
        clientId: reply.clientId,
        transport: transportType(),
        error: reply.error,
        advice: reply.advice,
    });
    if (reply.successful) {
        // Subscriptions were cleared by the client when it (re)handshook: subscribe again.
        subscriptions.clear();
        cometd.batch(() => {
            for (const channel of wanted) {
                subscribe(channel);
            }
        });
    }
});

let connected = false;
cometd.addListener("/meta/connect", (reply) => {
    if (cometd.isDisconnected()) {
        connected = false;
        return;
    }
    const wasConnected = connected;
    connected = reply.successful === true;
    if (connected && !wasConnected) {
        emit({event: "connected", clientId: cometd.getClientId(), transport: transportType()});
    } else if (!connected) {
        emit({
            event: "connect_failed",
            clientId: reply.clientId,
            error: reply.error,
            advice: reply.advice,
            failure: reply.failure ? String(reply.failure.reason || reply.failure.httpCode || "") : undefined,
        });
    }
});

cometd.addListener("/meta/unsuccessful", (reply) => {
    emit({event: "unsuccessful", channel: reply.channel, error: reply.error, advice: reply.advice});
});

function handle(command) {
    switch (command.cmd) {
        case "subscribe": {
            wanted.add(command.channel);
            subscribe(command.channel);
            break;
        }
        case "unsubscribe": {
            const channels = command.channel ? [command.channel] : [...wanted];
            for (const channel of channels) {
                wanted.delete(channel);
                const subscription = subscriptions.get(channel);
                subscriptions.delete(channel);
                if (!subscription) {
                    emit({event: "unsubscribed", channel, successful: false, error: "not subscribed"});
                    continue;
                }
                cometd.unsubscribe(subscription, (reply) => {
                    emit({
                        event: "unsubscribed",
                        channel,
                        successful: reply.successful === true,
                        subscription: reply.subscription,
                        error: reply.error,
                    });
                });
            }
            break;
        }
        case "publish": {
            cometd.publish(command.channel, command.data, (reply) => {
                emit({event: "published", channel: command.channel, successful: reply.successful === true, error: reply.error});
            });
            break;
        }
        case "status": {
            emit({
                event: "status",
                status: cometd.getStatus(),
                // Whether the last /meta/connect reply was successful (getStatus() flips between
                // "connecting" and "connected" on every long-poll cycle).
                connected,
                clientId: cometd.getClientId(),
                transport: transportType(),
                subscriptions: [...subscriptions.keys()],
            });
            break;
        }
        case "disconnect": {
            cometd.disconnect((reply) => {
                emit({event: "disconnected", successful: reply.successful === true, error: reply.error, status: cometd.getStatus()});
                // Leave time for the transport to close its connections (e.g. WebSocket close frame).
                setTimeout(() => exit(0), 200);
            });
            break;
        }
        case "exit": {
            exit(0);
            break;
        }
        default:
            emit({event: "error", error: "unknown command", command});
    }
}

const input = readline.createInterface({input: process.stdin, terminal: false});
input.on("line", (line) => {
    if (!line.trim()) {
        return;
    }
    let command;
    try {
        command = JSON.parse(line);
    } catch (x) {
        emit({event: "error", error: "invalid JSON command: " + line});
        return;
    }
    try {
        handle(command);
    } catch (x) {
        emit({event: "error", error: String(x && x.message ? x.message : x), command});
    }
});
// pytest went away (or closed our stdin on purpose): do not linger.
input.on("close", () => exit(0));

emit({event: "start", url: args.url, transport: args.transport, versions});
// CometD keeps the handshake props and reuses them when it handshakes again (e.g. after a 402).
cometd.handshake(args.token === undefined ? undefined : {ext: {token: args.token}});

'use strict';
// cometd-nodejs-server peer for bench/run.py: long-polling only (the package has no websocket
// transport), default in-memory sessions, Bayeux answered at /cometd.
// Usage: node server.js PORT [HOST]
const http = require('http');
const cometd = require('cometd-nodejs-server');

const port = parseInt(process.argv[2] || '8000', 10);
const host = process.argv[3] || '127.0.0.1';
const mount = '/cometd';

// timeout (ms) = how long a /meta/connect is held; 30 s matches the gateway's advice and Faye's.
const cometdServer = cometd.createCometDServer({ logLevel: 'info', timeout: 30000 });
const server = http.createServer((request, response) => {
  const path = (request.url || '').split('?')[0];
  if (path !== mount) {
    response.statusCode = 404;
    response.end();
    return;
  }
  cometdServer.handle(request, response);
});
server.keepAliveTimeout = 65000; // keep idle publishing connections open between ramp steps
server.listen(port, host, 2048, () => {
  process.stdout.write(`cometd listening on http://${host}:${port}${mount} pid=${process.pid}\n`);
});

const stop = () => {
  cometdServer.close();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref(); // held long-polls keep close() waiting
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

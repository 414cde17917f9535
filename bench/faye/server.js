'use strict';
// Faye reference server for bench/run.py: default in-memory engine, Bayeux mounted at /faye.
// Usage: node server.js PORT [HOST]
const http = require('http');
const faye = require('faye');

const port = parseInt(process.argv[2] || '8000', 10);
const host = process.argv[3] || '127.0.0.1';

// timeout (seconds) = how long a /meta/connect is held; 30 s matches the gateway's advice.
const bayeux = new faye.NodeAdapter({ mount: '/faye', timeout: 30 });
const server = http.createServer();
server.keepAliveTimeout = 65000; // keep idle publisher connections open between ramp steps
bayeux.attach(server);
server.listen(port, host, 2048, () => {
  process.stdout.write(`faye listening on http://${host}:${port}/faye pid=${process.pid}\n`);
});

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

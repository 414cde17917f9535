'use strict';
// Faye on one Redis (the faye-redis engine) for bench/run.py: the cluster peer of the gateway's
// Redis engine.  Everything else as bench/faye/server.js: Bayeux at /faye, 30 s connect hold.
// Usage: node server.js PORT [HOST] [REDIS_PORT] [REDIS_HOST]
//   (REDIS_PORT, REDIS_HOST also from the environment; default 127.0.0.1:6379)
const http = require('http');
const faye = require('faye');
const fayeRedis = require('faye-redis');

const port = parseInt(process.argv[2] || '8000', 10);
const host = process.argv[3] || '127.0.0.1';
const redisPort = parseInt(process.argv[4] || process.env.REDIS_PORT || '6379', 10);
const redisHost = process.argv[5] || process.env.REDIS_HOST || '127.0.0.1';

const bayeux = new faye.NodeAdapter({
  mount: '/faye',
  timeout: 30,
  engine: { type: fayeRedis, host: redisHost, port: redisPort },
});
const server = http.createServer();
server.keepAliveTimeout = 65000; // keep idle publisher connections open between ramp steps
bayeux.attach(server);
server.listen(port, host, 2048, () => {
  process.stdout.write(
    `faye-redis listening on http://${host}:${port}/faye pid=${process.pid} ` +
      `redis=${redisHost}:${redisPort}\n`,
  );
});

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

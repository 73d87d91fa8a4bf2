#!/usr/bin/env node
'use strict';
// Seed scenario, publisher side: the user service emits N "user.registered"
// events on one PublishStream, in batches, and prints one JSON line per event
// Kafka acknowledged. Exits 1 if any event failed.

const crypto = require('node:crypto');
const { newClient, parseArgs, positiveInt, eventLine, codeName } = require('./eventbus');

const USAGE = 'publisher --address ADDR --topic T --count N [--run-id R]';
const BATCH = 100; // events per PublishBatchRequest message

function main() {
  const args = parseArgs(process.argv.slice(2),
    { address: undefined, topic: undefined, count: undefined, 'run-id': crypto.randomBytes(6).toString('hex') },
    USAGE);
  const count = positiveInt(args.count, 'count');
  const runId = args['run-id'];

  // Build every request; correlation_id is the index, to match results.
  const requests = [];
  for (let i = 0; i < count; i++) {
    const userId = `u-${runId}-${i}`;
    requests.push({
      topic: args.topic,
      key: userId, // same user -> same partition, in order
      correlation_id: String(i),
      event: {
        id: crypto.randomUUID(), // set by us: a retry keeps the id, so consumers can dedupe
        type: 'user.registered',
        source: '//users/node',
        subject: `users/${userId}`,
        data_content_type: 'application/json',
        data: Buffer.from(JSON.stringify({ user_id: userId, email: `user${i}@example.com` }), 'utf8'),
        extensions: { runid: runId },
      },
    });
  }

  const client = newClient(args.address);
  const results = new Array(count);
  const call = client.PublishStream();

  call.on('data', (batch) => {
    for (const r of batch.responses) results[Number(r.correlation_id)] = r;
  });
  call.on('error', () => {}); // reported through 'status'
  call.on('status', (status) => {
    let failed = 0;
    requests.forEach((req, i) => {
      const r = results[i];
      if (r && r.status && r.status.code === 0) {
        process.stdout.write(eventLine({ ...req.event, id: r.event_id }, req.key, r.partition, r.offset) + '\n');
      } else {
        failed++;
        const why = r ? `${codeName(r.status.code)}: ${r.status.message}`
          : `no result (stream ended with ${codeName(status.code)}: ${status.details})`;
        process.stderr.write(`event ${i} (key ${req.key}) failed: ${why}\n`);
      }
    });
    client.close();
    if (status.code !== 0) process.stderr.write(`PublishStream ended with ${codeName(status.code)}: ${status.details}\n`);
    if (failed > 0 || status.code !== 0) {
      process.stderr.write(`${failed} of ${count} events failed\n`);
      process.exitCode = 1;
    }
  });

  // Send the batches, honouring backpressure, then half-close: the server
  // answers every request, then ends the stream with OK.
  let next = 0;
  const pump = () => {
    while (next < count) {
      const ok = call.write({ requests: requests.slice(next, next + BATCH) });
      next += BATCH;
      if (!ok) return call.once('drain', pump);
    }
    call.end();
  };
  pump();
}

main();

#!/usr/bin/env node
'use strict';
// Seed scenario, consumer side: the notification service receives
// "user.registered" events as a member of a consumer group, processes each
// event id once (a redelivered duplicate is only acked), prints one JSON line
// per processed event and acks it. Exits 0 once N distinct events were
// processed and acked.

const { newClient, parseArgs, positiveInt, eventLine, codeName } = require('./eventbus');

const USAGE = 'subscriber --address ADDR --topic T --group G --count N [--timeout-seconds S]';

function main() {
  const args = parseArgs(process.argv.slice(2),
    { address: undefined, topic: undefined, group: undefined, count: undefined, 'timeout-seconds': '60' },
    USAGE);
  const count = positiveInt(args.count, 'count');
  const timeoutSeconds = positiveInt(args['timeout-seconds'], 'timeout-seconds');

  const client = newClient(args.address);
  const call = client.Subscribe();
  const processed = new Set(); // event ids done (a real service keeps this in its database)
  let done = false;
  let finished = false;

  const fail = (msg) => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    process.stderr.write(`${msg}\n`);
    call.cancel();
    client.close();
    process.exitCode = 1;
  };
  const timer = setTimeout(() => fail(`timeout after ${timeoutSeconds}s: ${processed.size} of ${count} events processed`),
    timeoutSeconds * 1000);

  // The first message is the subscription.
  call.write({
    subscription: {
      topics: [args.topic],
      group: args.group,
      start_position: 'START_POSITION_EARLIEST',
    },
  });

  call.on('data', (msg) => {
    for (const e of msg.ack_errors) {
      process.stderr.write(`ack error for delivery ${e.delivery_id}: ${codeName(e.status.code)}: ${e.status.message}\n`);
    }
    if (done) return; // half-closed: what still arrives goes back to the group
    const acks = [];
    for (const d of msg.deliveries) {
      if (processed.size >= count) break; // leave the rest unacked: redelivered to the group
      const id = d.event.id;
      if (!processed.has(id)) {
        // "Process" the event, then ack it.
        process.stdout.write(eventLine(d.event, d.key, d.partition, d.offset) + '\n');
        processed.add(id);
      } // else: a duplicate (redelivery): already processed, only ack it.
      acks.push(d.delivery_id); // uint64 as a string
    }
    if (acks.length > 0) call.write({ ack: { delivery_ids: acks } }); // one ack message per response
    if (processed.size >= count) {
      done = true;
      call.end(); // half-close after the final acks; the server commits and ends the stream
    }
  });
  call.on('error', () => {}); // reported through 'status'
  call.on('status', (status) => {
    if (finished) return;
    if (status.code !== 0) return fail(`Subscribe stream ended with ${codeName(status.code)}: ${status.details}`);
    if (!done) return fail(`Subscribe stream ended early: ${processed.size} of ${count} events processed`);
    finished = true;
    clearTimeout(timer);
    client.close();
  });
}

main();

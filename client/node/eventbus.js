'use strict';
// Shared helpers for the eventbus Node examples: load the API from the
// repo's .proto at run time, parse flags, and format an event as one JSON line.

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_ROOT = path.resolve(__dirname, '..', '..', 'proto');

function loadEventBus() {
  const def = protoLoader.loadSync('eventbus/v1/eventbus.proto', {
    includeDirs: [PROTO_ROOT],
    keepCase: true, // field names as in the .proto: data_content_type, delivery_id
    longs: String, // int64/uint64 (offset, delivery_id) as decimal strings
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(def).eventbus.v1;
}

// address: "host:port" or "unix:/path" (both are grpc-js targets as they are).
function newClient(address) {
  const { EventBus } = loadEventBus();
  return new EventBus(address, grpc.credentials.createInsecure());
}

// Parses --name value / --name=value flags. spec: {name: default}; a default
// of undefined marks a required flag.
function parseArgs(argv, spec, usage) {
  const out = { ...spec };
  const fail = (msg) => {
    process.stderr.write(`${msg}\nusage: ${usage}\n`);
    process.exit(2);
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '-h' || arg === '--help') {
      process.stdout.write(`usage: ${usage}\n`);
      process.exit(0);
    }
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    if (!m || !(m[1] in spec)) fail(`unknown argument: ${arg}`);
    let value = m[2];
    if (value === undefined) {
      if (i + 1 >= argv.length) fail(`missing value for --${m[1]}`);
      value = argv[++i];
    }
    out[m[1]] = value;
  }
  for (const [name, value] of Object.entries(out)) {
    if (value === undefined) fail(`--${name} is required`);
  }
  return out;
}

function positiveInt(value, name) {
  if (!/^[0-9]+$/.test(String(value)) || Number(value) <= 0) {
    process.stderr.write(`--${name} must be a positive integer, got ${value}\n`);
    process.exit(2);
  }
  return Number(value);
}

// One JSON line, the same fields in the same order in every language.
// offset is an int64 kept as a decimal string by proto-loader; it is written
// as a JSON number without going through a JS number (no precision loss).
function eventLine(event, key, partition, offset) {
  const head = JSON.stringify({
    id: event.id,
    type: event.type,
    source: event.source,
    subject: event.subject,
    data_content_type: event.data_content_type,
    data: Buffer.from(event.data || []).toString('utf8'),
    extensions: sortedObject(event.extensions || {}),
    key,
    partition,
  });
  if (!/^-?[0-9]+$/.test(String(offset))) throw new Error(`bad offset ${offset}`);
  return `${head.slice(0, -1)},"offset":${offset}}`;
}

function sortedObject(obj) {
  const out = {};
  for (const k of Object.keys(obj).sort()) out[k] = obj[k];
  return out;
}

// Name of a gRPC status code, e.g. 14 -> "UNAVAILABLE".
function codeName(code) {
  return Object.keys(grpc.status).find((k) => grpc.status[k] === code) || String(code);
}

module.exports = { grpc, loadEventBus, newClient, parseArgs, positiveInt, eventLine, codeName };

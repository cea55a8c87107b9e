// kafkajs (npm, installed beside this file by `make kafkajs`) driven by the Kafka matrix tests
// (tests/cluster/kafka/kafka_clients.py) as a subprocess, so that its own behaviour is judged:
//
//   node kafkajs_client.js produce BOOTSTRAP TOPIC ACKS COUNT TAG [CODEC]
//       COUNT keyed messages (key k<i % 17>, value TAG-<i>) with acks 0, 1 or -1, in
//       batches of 1000, compressed with CODEC (none, gzip); prints {"sent": COUNT} when
//       every send resolved.
//   node kafkajs_client.js consume BOOTSTRAP TOPIC GROUP COUNT [TIMESTAMP]
//       a group member reading every partition from the earliest offset (or, with
//       TIMESTAMP, from the offsets ListOffsets gives for it) until COUNT records came;
//       prints one JSON line per record: [partition, offset, key, value, timestamp].
//   node kafkajs_client.js offsets BOOTSTRAP TOPIC TIMESTAMP
//       the admin's fetchTopicOffsetsByTimestamp: {"<partition>": offset, ...}.
//   node kafkajs_client.js member BOOTSTRAP TOPIC GROUP OUT
//       a group member until SIGTERM: appends "partition offset value" per record to OUT
//       (written before eachMessage returns, so before kafkajs may commit past it), commits
//       every 200 ms, and on SIGTERM leaves the group cleanly.
'use strict';
const path = require('path');
const { CompressionTypes, Kafka, logLevel } = require(path.join(process.env.KAFKAJS_HOME || '', 'kafkajs'));

const [mode, bootstrap, topic, ...rest] = process.argv.slice(2);
const kafka = new Kafka({ clientId: 'sluice-matrix', brokers: bootstrap.split(','),
                          logLevel: logLevel.ERROR, retry: { retries: 8 } });

async function produce(acks, count, tag, codec) {
  const compression = { none: CompressionTypes.None, gzip: CompressionTypes.GZIP }[codec || 'none'];
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  const BATCH = 1000;
  for (let start = 0; start < count; start += BATCH) {
    const messages = [];
    for (let i = start; i < Math.min(count, start + BATCH); i++) {
      messages.push({ key: `k${i % 17}`, value: `${tag}-${i}` });
    }
    await producer.send({ topic, acks, compression, messages });
  }
  await producer.disconnect();
  return JSON.stringify({ sent: count }) + '\n';
}

async function consume(group, count, timestamp) {
  // kafkajs reads through a group (it has no assign) and commits nothing here, so a rejoin in
  // the middle re-reads from the start: once in a 300,000-record read at load 25-30 with a 10 s
  // session, 307,465 records came (a rejoin is the likely cause, not proven); 30 s leaves room.
  // After a rejoin, records at or below a partition's last one taken are that re-read (the
  // group's doing, not the broker's) and are skipped; without a rejoin every record counts, so
  // a record the broker served twice still fails the test.
  const consumer = kafka.consumer({ groupId: group, sessionTimeout: 30000, rebalanceTimeout: 30000,
                                    heartbeatInterval: 500, maxWaitTimeInMs: 200 });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  let starts = null;
  if (timestamp !== undefined) {
    const admin = kafka.admin();
    await admin.connect();
    starts = await admin.fetchTopicOffsetsByTimestamp(topic, Number(timestamp));
    await admin.disconnect();
  }
  let seen = 0;
  const out = [];
  let finish;
  let fail;
  const finished = new Promise((resolve, reject) => { finish = resolve; fail = reject; });
  consumer.on(consumer.events.CRASH, ({ payload }) => fail(payload.error));
  const last = new Map();
  let joins = 0;
  consumer.on(consumer.events.GROUP_JOIN, () => {
    joins += 1;
    if (starts) {
      for (const { partition, offset } of starts) {
        if (Number(offset) >= 0) consumer.seek({ topic, partition, offset });
      }
    }
  });
  await consumer.run({
    autoCommit: false,
    eachBatch: async ({ batch }) => {
      for (const m of batch.messages) {
        const offset = Number(m.offset);
        if (joins > 1 && last.has(batch.partition) && offset <= last.get(batch.partition)) continue;
        last.set(batch.partition, offset);
        out.push(JSON.stringify([batch.partition, Number(m.offset),
          m.key === null ? null : m.key.toString(),
          m.value === null ? null : m.value.toString(), Number(m.timestamp)]));
        seen += 1;
      }
      if (seen >= count) finish();
    },
  });
  if (count === 0) finish();
  await finished;
  await consumer.disconnect();
  return out.length ? out.join('\n') + '\n' : '';
}

async function offsets(timestamp) {
  const admin = kafka.admin();
  await admin.connect();
  const found = await admin.fetchTopicOffsetsByTimestamp(topic, Number(timestamp));
  await admin.disconnect();
  const table = {};
  for (const { partition, offset } of found) table[partition] = Number(offset);
  return JSON.stringify(table) + '\n';
}

async function member(group, outPath) {
  const fs = require('fs');
  const out = fs.openSync(outPath, 'a');
  const consumer = kafka.consumer({ groupId: group, sessionTimeout: 6000,
                                    heartbeatInterval: 500, maxWaitTimeInMs: 200 });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  let stop;
  const stopped = new Promise((resolve) => { stop = resolve; });
  let crashed;
  const crash = new Promise((_, reject) => { crashed = reject; });
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    if (!payload.restart) crashed(payload.error);
  });
  process.on('SIGTERM', () => stop());
  await consumer.run({
    autoCommit: true,
    autoCommitInterval: 200,
    eachMessage: async ({ partition, message }) => {
      fs.writeSync(out, `${partition} ${message.offset} ${message.value.toString()}\n`);
    },
  });
  await Promise.race([stopped, crash]);
  await consumer.disconnect();
  fs.closeSync(out);
}

const run = { produce: () => produce(Number(rest[0]), Number(rest[1]), rest[2], rest[3]),
              consume: () => consume(rest[0], Number(rest[1]), rest[2]),
              offsets: () => offsets(rest[0]),
              member: () => member(rest[0], rest[1]) }[mode];
// a promise nothing will settle lets Node exit 0 with its work undone: that is a failure
let settled = false;
process.on('exit', (code) => {
  if (!settled && code === 0) {
    process.stderr.write(`kafkajs ${mode} ended before it finished\n`);
    process.exitCode = 1;
  }
});
// stdout to a pipe is written asynchronously: exit only once the output is out
run().then((text) => {
  settled = true;
  process.stdout.write(text || '', () => process.exit(0));
}, (err) => {
  settled = true;
  process.stderr.write(`kafkajs ${mode} failed: ${err.stack || err}\n`);
  process.exit(1);
});

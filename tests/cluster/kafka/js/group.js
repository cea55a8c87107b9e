// Two kafkajs consumers in one group read a topic (10 ms a record, so that the second joins
// while the first still reads) until `count` records were seen in all,
// then disconnect (committing what they read). Prints {"c0": [[partition, offset, value]...],
// "c1": [...]} on stdout. Usage: node group.js BOOTSTRAP GROUP TOPIC COUNT
const { Kafka, logLevel } = require("kafkajs");

const [bootstrap, group, topic, count] = process.argv.slice(2);
const kafka = new Kafka({ clientId: "sluice-test", brokers: bootstrap.split(","),
                          logLevel: logLevel.NOTHING });
const seen = { c0: [], c1: [] };
let total = 0;

async function start(name) {
  const consumer = kafka.consumer({ groupId: group, sessionTimeout: 10000,
                                    heartbeatInterval: 500 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    autoCommitInterval: 200,
    eachMessage: async ({ partition, message }) => {
      seen[name].push([partition, Number(message.offset), message.value.toString()]);
      total += 1;
      await new Promise((resolve) => setTimeout(resolve, 10));  // slow enough to share
    },
  });
  return consumer;
}

(async () => {
  const consumers = [await start("c0"), await start("c1")];
  const deadline = Date.now() + 90000;
  while (total < Number(count) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  for (const consumer of consumers) await consumer.disconnect();
  process.stdout.write(JSON.stringify(seen));
  process.exit(total >= Number(count) ? 0 : 1);
})().catch((err) => { console.error(err); process.exit(2); });

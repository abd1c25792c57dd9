// The BullMQ side of `make bench`: benchmarks/peers/bullmq_peer.py runs it as a subprocess.
//
//   node bench.mjs worker          a worker at concurrency 10 until SIGTERM (W2, W3, W4)
//   node bench.mjs add TYPE        add the JSON list of payloads read on stdin (the prefill)
//   node bench.mjs w1 N            N adds one at a time, then N with one addBulk: prints JSON
//   node bench.mjs w3 N GAP_MS W STAMPS
//                                  W warm-ups (each awaited in the worker's STAMPS file), then N
//                                  adds GAP_MS apart: prints when each returned
//
// Everything is BullMQ's default except the worker's concurrency. Keys live under the prefix
// TIMECRISIS_BENCH_BULLMQ_PREFIX (Redis is shared: the Python side deletes only those keys).
// Times are wall-clock seconds (timeOrigin + now(), sub-millisecond), like the Python side's
// time.time(): the W3 enqueuer and the worker are different processes.
import { openSync, readFileSync, writeSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { Queue, Worker } from "bullmq";

const QUEUE = "tcbench";
const CONCURRENCY = 10;
const connection = { url: process.env.TIMECRISIS_BENCH_REDIS_URL ?? "redis://127.0.0.1:6379/9" };
const prefix = process.env.TIMECRISIS_BENCH_BULLMQ_PREFIX ?? "tcbench-bullmq";
const stampFile = process.env.TIMECRISIS_BENCH_STAMP_FILE;

const wallSeconds = () => (performance.timeOrigin + performance.now()) / 1000;

let stampFd = null;
function writeStamp(n) {
  // One short write with O_APPEND, as benchmarks/handlers.py does: lines never interleave.
  stampFd ??= openSync(stampFile, "a");
  writeSync(stampFd, `${n} ${wallSeconds().toFixed(6)}\n`);
}

async function worker() {
  const w = new Worker(
    QUEUE,
    async (job) => {
      if (job.name === "stamp") writeStamp(job.data.n);
    },
    { connection, prefix, concurrency: CONCURRENCY },
  );
  w.on("error", (err) => console.error(err));
  const stop = async () => {
    await w.close();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  await w.waitUntilReady();
}

async function withQueue(fn) {
  const queue = new Queue(QUEUE, { connection, prefix });
  try {
    return await fn(queue);
  } finally {
    await queue.close();
  }
}

function stampsSeen(path) {
  try {
    return new Set(
      readFileSync(path, "utf8")
        .split("\n")
        .filter(Boolean)
        .map((line) => Number(line.split(" ")[0])),
    );
  } catch {
    return new Set();
  }
}

async function awaitStamp(path, n, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (!stampsSeen(path).has(n)) {
    if (Date.now() > deadline) throw new Error(`no worker started job ${n} in ${timeoutMs} ms`);
    await sleep(10);
  }
}

const commands = {
  worker,

  add: (type) =>
    withQueue(async (queue) => {
      const payloads = JSON.parse(readFileSync(0, "utf8"));
      await queue.addBulk(payloads.map((data) => ({ name: type, data })));
      return { added: payloads.length };
    }),

  w1: (count) =>
    withQueue(async (queue) => {
      const n = Number(count);
      await queue.add("noop", {}); // connects and loads the scripts: not timed
      let started = performance.now();
      for (let i = 0; i < n; i++) await queue.add("noop", {});
      const one = (performance.now() - started) / 1000;
      const jobs = Array.from({ length: n }, () => ({ name: "noop", data: {} }));
      started = performance.now();
      await queue.addBulk(jobs);
      const many = (performance.now() - started) / 1000;
      return { one_per_s: n / one, many_per_s: n / many };
    }),

  w3: (count, gapMs, warmups, stamps) =>
    withQueue(async (queue) => {
      for (let k = 0; k < Number(warmups); k++) {
        await queue.add("stamp", { n: -k - 1 });
        await awaitStamp(stamps, -k - 1, 60_000); // the worker is up and listening
      }
      await sleep(200); // idle again
      const returned = {};
      let nextAt = performance.now();
      for (let n = 0; n < Number(count); n++) {
        await queue.add("stamp", { n });
        returned[n] = wallSeconds();
        nextAt += Number(gapMs);
        await sleep(Math.max(0, nextAt - performance.now()));
      }
      return { returned };
    }),
};

const [command, ...args] = process.argv.slice(2);
if (!(command in commands)) {
  console.error(`usage: node bench.mjs ${Object.keys(commands).join("|")} ...`);
  process.exit(2);
}
const result = await commands[command](...args);
if (result !== undefined) console.log(JSON.stringify(result));

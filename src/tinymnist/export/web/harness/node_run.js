// Node.js test driver of a model .wasm: node node_run.js MODEL.wasm IMAGES.bin SCORES.bin [REPEATS]
// IMAGES.bin holds N images of 784 bytes; SCORES.bin receives N x 10 int32 scores (little-endian)
// and then N predicted digits (one byte each), the layout of the C export's host harness. Prints
// one JSON line: the images run and the median milliseconds per image over REPEATS passes.
"use strict";
const fs = require("fs");

const [wasmPath, imagesPath, scoresPath, repeatsArg] = process.argv.slice(2);
const instance = new WebAssembly.Instance(new WebAssembly.Module(fs.readFileSync(wasmPath)), {});
const { memory, tinymnist_input, tinymnist_output, tinymnist_run } = instance.exports;
const images = fs.readFileSync(imagesPath);
const n = Math.floor(images.length / 784);
const classes = 10;
const input = new Uint8Array(memory.buffer, tinymnist_input(), 784);
const output = new Int32Array(memory.buffer, tinymnist_output(), classes);
const scores = new Int32Array(n * classes);
const digits = new Uint8Array(n);
const passes = [];
for (let r = 0; r < Math.max(1, Number(repeatsArg || 1)); r++) {
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    input.set(images.subarray(i * 784, (i + 1) * 784));
    digits[i] = tinymnist_run();
    scores.set(output, i * classes);
  }
  passes.push(Number(process.hrtime.bigint() - start) / 1e6 / Math.max(n, 1));
}
passes.sort((a, b) => a - b);
fs.writeFileSync(scoresPath, Buffer.concat([Buffer.from(scores.buffer), Buffer.from(digits.buffer)]));
console.log(JSON.stringify({ images: n, ms_per_image: passes[Math.floor(passes.length / 2)] }));

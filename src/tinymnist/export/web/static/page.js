// page.js - the page of tinymnist's web export: draw on the canvas, and on every change the drawing
// goes through preprocess.js to a 28x28 image, which the WebAssembly model (model.js) scores.
// For tests and other scripts, window.tinymnist holds the loaded build and the last answer.
"use strict";

// A module that uses one simd128 instruction: it validates only where WebAssembly SIMD is supported.
const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0,
  65, 0, 253, 15, 253, 98, 11]);
const BRUSH = 20; // pixels of the 280x280 canvas, as `tinymnist serve` draws

const canvas = document.getElementById("canvas");
const ctx = canvas.getContext("2d", { willReadFrequently: true });
const seen = document.getElementById("seen").getContext("2d");
const answer = document.getElementById("answer");
const note = document.getElementById("note");
const bars = document.getElementById("bars");
const state = { build: null, last: null, ready: null };
window.tinymnist = state;

for (let d = 0; d < TINYMNIST_MODEL.classes; d++) {
  bars.insertAdjacentHTML("beforeend",
    `<div class="bar" id="bar-${d}"><span>${d}</span><div class="track"><div class="fill"></div></div><span></span></div>`);
}

function decode(base64) {
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}

// Compiled asynchronously: browsers refuse to compile modules over 4 KB synchronously on the page's thread.
async function load() {
  const simd = TINYMNIST_MODEL.simd !== null && WebAssembly.validate(SIMD_PROBE);
  const { instance } = await WebAssembly.instantiate(decode(simd ? TINYMNIST_MODEL.simd : TINYMNIST_MODEL.scalar), {});
  const e = instance.exports;
  state.build = simd ? "simd128" : "scalar";
  state.input = new Uint8Array(e.memory.buffer, e.tinymnist_input(), 784);
  state.output = new Int32Array(e.memory.buffer, e.tinymnist_output(), TINYMNIST_MODEL.classes);
  state.run = e.tinymnist_run;
  document.getElementById("build").textContent = state.build;
}

// The model's answer for a 28x28 image (784 bytes, 0 = background, 255 = ink).
function predict(image) {
  state.input.set(image);
  const digit = state.run();
  return { digit, scores: Array.from(state.output) };
}
state.predict = predict;

function show(image, result) {
  const logits = result.scores.map((s) => s * TINYMNIST_MODEL.scoreUnit);
  const top = Math.max(...logits);
  const exp = logits.map((l) => Math.exp(l - top));
  const total = exp.reduce((a, b) => a + b, 0);
  answer.textContent = String(result.digit);
  note.textContent = `${((100 * exp[result.digit]) / total).toFixed(1)}% sure`;
  result.scores.forEach((score, d) => {
    const bar = document.getElementById(`bar-${d}`);
    bar.classList.toggle("best", d === result.digit);
    bar.querySelector(".fill").style.width = `${((100 * exp[d]) / total).toFixed(1)}%`;
    bar.lastElementChild.textContent = String(score);
    bar.title = `int32 score ${score}, logit ${logits[d].toFixed(2)}`;
  });
  const pixels = seen.createImageData(28, 28);
  image.forEach((v, i) => pixels.data.set([v, v, v, 255], 4 * i));
  seen.putImageData(pixels, 0, 0);
}

function reset() {
  ctx.fillStyle = "black";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  answer.textContent = "–";
  note.textContent = "draw something";
  for (let d = 0; d < TINYMNIST_MODEL.classes; d++) {
    const bar = document.getElementById(`bar-${d}`);
    bar.classList.remove("best");
    bar.querySelector(".fill").style.width = "0";
    bar.lastElementChild.textContent = "";
  }
  seen.fillStyle = "black";
  seen.fillRect(0, 0, 28, 28);
  state.last = null;
}

// state.busy: a drawing change not yet answered (scripts that draw wait for it to clear).
state.busy = false;
function update() {
  state.busy = false;
  if (!state.run) return;
  const image = tinymnistPreprocess.toMnist(
    tinymnistPreprocess.rgbaToGray(ctx.getImageData(0, 0, canvas.width, canvas.height).data), canvas.width, canvas.height);
  if (image === null) return; // too faint to be ink yet
  const result = predict(image);
  state.last = { input: Array.from(image), ...result };
  show(image, result);
}

function schedule() {
  if (!state.busy) {
    state.busy = true;
    requestAnimationFrame(update); // at most once a frame, however many pointer events arrive
  }
}

let last = null;
function point(e) {
  const r = canvas.getBoundingClientRect();
  return [((e.clientX - r.left) * canvas.width) / r.width, ((e.clientY - r.top) * canvas.height) / r.height];
}

function stroke(p) {
  ctx.strokeStyle = "white";
  ctx.lineWidth = BRUSH;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(last[0], last[1]);
  ctx.lineTo(p[0], p[1]);
  ctx.stroke();
  last = p;
  schedule();
}

canvas.addEventListener("pointerdown", (e) => {
  e.preventDefault();
  last = point(e);
  try {
    canvas.setPointerCapture(e.pointerId); // keep the stroke when the finger leaves the canvas
  } catch (err) {
    // a synthetic event has no active pointer to capture
  }
  stroke(last);
});
canvas.addEventListener("pointermove", (e) => {
  if (last !== null) stroke(point(e));
});
["pointerup", "pointercancel"].forEach((type) => canvas.addEventListener(type, () => {
  last = null;
  schedule();
}));
document.getElementById("clear").addEventListener("click", reset);

reset();
state.ready = load().then(schedule, (err) => {
  document.getElementById("build").textContent = `not loaded: ${err}`;
  throw err;
});

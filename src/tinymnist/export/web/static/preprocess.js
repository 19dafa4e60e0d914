// preprocess.js - a drawing on the page's canvas to the 28x28 image the model reads, the way
// `tinymnist serve` makes it (tinymnist/data/preprocess.py, `load_digit`): reduce to at most 256
// pixels a side, remove the background, crop to the ink, fit into 20x20 keeping the aspect ratio,
// centre by mass.
//
// A port of the Python, step for step and number for number, so that the page gives the model the
// same 28x28 as the server for the same drawing (tests/test_web_export.py compares them): Pillow's
// resampling with its 22-bit integer coefficients, its rank filters and fixed-point box blurs,
// numpy's float32 arithmetic where the Python computes in float32 (Math.fround), Python's
// round-half-to-even. Two steps of preprocess.py are for photographs and not ported: which way the
// ink is (on the canvas it is always light on black) and clutter beside the digit (the canvas holds
// only what was drawn), so a speck drawn far from the digit, or ink touching the canvas's edge beside
// a separate digit, counts here and not on the server. Exact for the page's square canvas only: for
// other shapes Pillow 13 orders its resampling passes by rules of its own.
"use strict";

const WORK_SIZE = 256; // preprocess.WORK_SIZE
const DETAIL_SIZE = 64;
const MIN_INK = 40;
const NOISE_FRACTION = 0.2;
const STROKE_FRACTION = 0.4;
const MIN_STROKE = 0.9;
const TARGET_STROKE = 2.0;
const PRECISION_BITS = 22; // Pillow's Resample.c: 32 - 8 - 2
const f32 = Math.fround;

// Python's round(): halves go to the even neighbour.
function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function sinc(x) {
  if (x === 0.0) return 1.0;
  x *= Math.PI;
  return Math.sin(x) / x;
}

function lanczos(x) {
  return -3.0 <= x && x < 3.0 ? sinc(x) * sinc(x / 3) : 0.0;
}

function bilinear(x) {
  x = Math.abs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

const LANCZOS = { fn: lanczos, support: 3.0 };
const BILINEAR = { fn: bilinear, support: 1.0 };

// Pillow's precompute_coeffs + normalize_coeffs_8bpc: per output pixel, its first input pixel,
// how many it reads, and their integer weights.
function coefficients(inSize, outSize, kernel) {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1.0);
  const support = kernel.support * filterscale;
  const out = [];
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1.0 / filterscale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    const w = new Float64Array(Math.max(xmax, 0));
    let ww = 0.0;
    for (let x = 0; x < xmax; x++) {
      w[x] = kernel.fn((x + xmin - center + 0.5) * ss);
      ww += w[x];
    }
    const k = new Array(w.length);
    for (let x = 0; x < w.length; x++) {
      const v = ww !== 0.0 ? w[x] / ww : w[x];
      k[x] = Math.trunc(v < 0 ? -0.5 + v * (1 << PRECISION_BITS) : 0.5 + v * (1 << PRECISION_BITS));
    }
    out.push({ xmin, k });
  }
  return out;
}

function clip8(ss) {
  return Math.min(255, Math.max(0, Math.floor(ss / (1 << PRECISION_BITS))));
}

// Pillow's Lanczos resize of an 8-bit grey image in two passes, horizontal then vertical, each
// rounded to 8 bits (preprocess.lanczos_resize spells out the same order in the Python).
function resize(src, w, h, outW, outH, kernel) {
  let img = src, width = w;
  if (outW !== w) {
    const cs = coefficients(w, outW, kernel);
    const tmp = new Uint8Array(outW * h);
    for (let y = 0; y < h; y++) {
      for (let xx = 0; xx < outW; xx++) {
        const { xmin, k } = cs[xx];
        let ss = 1 << (PRECISION_BITS - 1);
        for (let x = 0; x < k.length; x++) ss += img[y * width + x + xmin] * k[x];
        tmp[y * outW + xx] = clip8(ss);
      }
    }
    img = tmp;
    width = outW;
  }
  if (outH !== h) {
    const cs = coefficients(h, outH, kernel);
    const tmp = new Uint8Array(width * outH);
    for (let yy = 0; yy < outH; yy++) {
      const { xmin: ymin, k } = cs[yy];
      for (let x = 0; x < width; x++) {
        let ss = 1 << (PRECISION_BITS - 1);
        for (let y = 0; y < k.length; y++) ss += img[(y + ymin) * width + x] * k[y];
        tmp[yy * width + x] = clip8(ss);
      }
    }
    img = tmp;
  }
  return img === src ? Uint8Array.from(src) : img;
}

function resizeLanczos(src, w, h, outW, outH) {
  return resize(src, w, h, outW, outH, LANCZOS);
}

// Image.thumbnail((size, size), kernel): the longer side to `size`, the aspect ratio kept. Pillow
// first halves an image at least four times too large (Image.reduce, reducing_gap 2): with the
// page's 280x280 canvas that happens only to the 256-pixel working copy on its way to 64.
function thumbnail(gray, w, h, size, kernel) {
  if (w <= size && h <= size) return { img: gray, w, h };
  const aspect = w / h;
  let tw = size, th = size;
  const pick = (n, key) => Math.max([Math.floor(n), Math.ceil(n)].reduce((a, b) => (key(b) < key(a) ? b : a)), 1);
  if (1 >= aspect) tw = pick(th * aspect, (n) => Math.abs(aspect - n / th));
  else th = pick(tw / aspect, (n) => (n === 0 ? 0 : Math.abs(aspect - tw / n)));
  const fx = Math.trunc(w / tw / 2.0) || 1, fy = Math.trunc(h / th / 2.0) || 1;
  if (fx > 1 || fy > 1) {
    if (fx !== 2 || fy !== 2 || w % 2 || h % 2) throw new Error(`no port of Pillow's reduce by ${fx}x${fy} of ${w}x${h}`);
    const half = new Uint8Array((w / 2) * (h / 2)); // ImagingReduce2x2: a rounded mean of 2x2
    for (let y = 0; y < h / 2; y++)
      for (let x = 0; x < w / 2; x++) {
        const i = 2 * y * w + 2 * x;
        half[y * (w / 2) + x] = (gray[i] + gray[i + 1] + gray[i + w] + gray[i + w + 1] + 2) >> 2;
      }
    return { img: resize(half, w / 2, h / 2, tw, th, kernel), w: tw, h: th };
  }
  return { img: resize(gray, w, h, tw, th, kernel), w: tw, h: th };
}

// MinFilter / MaxFilter (Pillow's rank filter over a k x k window, the image's edge replicated).
function rankFilter(src, w, h, k, pick) {
  const r = k >> 1, rows = new Uint8Array(w * h), out = new Uint8Array(w * h);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      let m = src[y * w + x];
      for (let d = Math.max(0, x - r); d <= Math.min(w - 1, x + r); d++) m = pick(m, src[y * w + d]);
      rows[y * w + x] = m;
    }
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      let m = rows[y * w + x];
      for (let d = Math.max(0, y - r); d <= Math.min(h - 1, y + r); d++) m = pick(m, rows[d * w + x]);
      out[y * w + x] = m;
    }
  return out;
}

// One line of Pillow's box blur (BoxBlur.c, ImagingLineBoxBlur8): a window of 2 * radius + 1 pixels
// and a fractional weight on the two beyond it, in 24-bit fixed point, the edge pixel repeated.
function boxBlurLine(inp, radius, ww, fw) {
  const n = inp.length, lastx = n - 1, out = new Uint8Array(n);
  const edgeA = Math.min(radius + 1, n), edgeB = Math.max(n - radius - 1, 0);
  let acc = inp[0] * (radius + 1);
  for (let x = 0; x < edgeA - 1; x++) acc += inp[x];
  acc += inp[lastx] * (radius - edgeA + 1);
  const save = (x, left, right) => {
    out[x] = Math.floor((acc * ww + (inp[left] + inp[right]) * fw + (1 << 23)) / (1 << 24));
  };
  if (edgeA <= edgeB) {
    for (let x = 0; x < edgeA; x++) { acc += inp[x + radius] - inp[0]; save(x, 0, x + radius + 1); }
    for (let x = edgeA; x < edgeB; x++) { acc += inp[x + radius] - inp[x - radius - 1]; save(x, x - radius - 1, x + radius + 1); }
    for (let x = edgeB; x <= lastx; x++) { acc += inp[lastx] - inp[x - radius - 1]; save(x, x - radius - 1, lastx); }
  } else {
    for (let x = 0; x < edgeB; x++) { acc += inp[x + radius] - inp[0]; save(x, 0, x + radius + 1); }
    for (let x = edgeB; x < edgeA; x++) { acc += inp[lastx] - inp[0]; save(x, 0, lastx); }
    for (let x = edgeA; x <= lastx; x++) { acc += inp[lastx] - inp[x - radius - 1]; save(x, x - radius - 1, lastx); }
  }
  return out;
}

// ImageFilter.GaussianBlur(radius): three box blurs along the rows, then three along the columns,
// with the box radius Pillow derives (_gaussian_blur_radius, in C floats).
function gaussianBlur(src, w, h, radius) {
  const passes = 3;
  const sigma2 = f32(f32(f32(radius) * f32(radius)) / passes);
  const L = f32(Math.sqrt(12.0 * sigma2 + 1.0));
  const l = Math.floor((L - 1.0) / 2.0);
  let a = f32(f32(f32(2 * l) + 1) * f32(f32(l * f32(l + 1)) - f32(3 * sigma2)));
  a = f32(a / f32(6 * f32(sigma2 - f32(f32(l + 1) * f32(l + 1)))));
  const box = f32(l + a), r = Math.trunc(box);
  const ww = Math.trunc(f32((1 << 24) / f32(f32(box * 2) + 1)));
  const fw = Math.floor(((1 << 24) - (r * 2 + 1) * ww) / 2);
  const img = Uint8Array.from(src);
  for (let y = 0; y < h; y++) {
    let line = img.subarray(y * w, (y + 1) * w);
    for (let p = 0; p < passes; p++) line = boxBlurLine(line, r, ww, fw);
    img.set(line, y * w);
  }
  for (let x = 0; x < w; x++) {
    let line = new Uint8Array(h);
    for (let y = 0; y < h; y++) line[y] = img[y * w + x];
    for (let p = 0; p < passes; p++) line = boxBlurLine(line, r, ww, fw);
    for (let y = 0; y < h; y++) img[y * w + x] = line[y];
  }
  return img;
}

// ink_map for light ink on a dark ground: the image less its background, a grey opening at a
// quarter of the image's size (computed on a 64-pixel copy, smoothed, scaled back). Strokes are
// thinner than the opening and vanish from the background; a solid patch of ink wider than it
// stays there and is removed from the ink, as the server does.
function inkMap(gray, w, h) {
  const t = thumbnail(gray, w, h, WORK_SIZE, LANCZOS);
  const small = thumbnail(t.img, t.w, t.h, 64, BILINEAR);
  const k = Math.max(3, Math.floor(Math.max(small.w, small.h) / 4) | 1);
  let back = rankFilter(small.img, small.w, small.h, k, Math.min);
  back = gaussianBlur(rankFilter(back, small.w, small.h, k, Math.max), small.w, small.h, k / 2);
  back = resize(back, small.w, small.h, t.w, t.h, BILINEAR);
  const ink = new Float32Array(t.w * t.h);
  for (let i = 0; i < ink.length; i++) ink[i] = Math.max(0, t.img[i] - back[i]);
  return { ink, w: t.w, h: t.h };
}

function maxOf(a) {
  let m = 0;
  for (let i = 0; i < a.length; i++) if (a[i] > m) m = a[i];
  return m;
}

// Boolean dilation by a (2r+1)-pixel square (preprocess.dilate), rows then columns.
function dilate(mask, w, h, r) {
  const rows = new Uint8Array(w * h), out = new Uint8Array(w * h);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      if (mask[y * w + x]) for (let d = Math.max(0, y - r); d <= Math.min(h - 1, y + r); d++) rows[d * w + x] = 1;
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      if (rows[y * w + x]) for (let d = Math.max(0, x - r); d <= Math.min(w - 1, x + r); d++) out[y * w + d] = 1;
  return out;
}

// digit_region for a clean drawing: every piece of strong ink is the digit, plus its soft edge.
function digitRegion(ink, w, h) {
  const threshold = f32(f32(STROKE_FRACTION) * maxOf(ink));
  const strong = new Uint8Array(w * h);
  for (let i = 0; i < ink.length; i++) strong[i] = ink[i] >= threshold ? 1 : 0;
  return dilate(strong, w, h, Math.max(2, Math.floor(Math.max(w, h) / 50)));
}

function bounds(mask, w, h) {
  let top = h, bottom = -1, left = w, right = -1;
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      if (mask[y * w + x]) {
        top = Math.min(top, y); bottom = Math.max(bottom, y);
        left = Math.min(left, x); right = Math.max(right, x);
      }
  return { top, bottom, left, right };
}

function crop(a, w, top, bottom, left, right) { // inclusive bounds
  const cw = right - left + 1, ch = bottom - top + 1;
  const out = new Float32Array(cw * ch);
  for (let y = 0; y < ch; y++) for (let x = 0; x < cw; x++) out[y * cw + x] = a[(y + top) * w + x + left];
  return out;
}

// find_digit: the ink map with everything but the digit zeroed, or null for a blank canvas. A small
// digit is read again from the full-resolution canvas, as the Python does.
function findDigit(gray, w, h) {
  const t = inkMap(gray, w, h);
  let ink = t.ink, iw = t.w, ih = t.h;
  if (maxOf(ink) < MIN_INK) return null;
  let region = digitRegion(ink, iw, ih);
  const reduced = Math.max(w, h) / Math.max(iw, ih);
  const b = bounds(region, iw, ih);
  const size = Math.max(b.bottom - b.top, b.right - b.left) + 1;
  if (reduced > 1 && size < DETAIL_SIZE) {
    const margin = size;
    const top = Math.max(0, Math.trunc((b.top - margin) * reduced));
    const bottom = Math.min(h, Math.trunc((b.bottom + 1 + margin) * reduced));
    const left = Math.max(0, Math.trunc((b.left - margin) * reduced));
    const right = Math.min(w, Math.trunc((b.right + 1 + margin) * reduced));
    const detail = inkMap(Uint8Array.from(crop(gray, w, top, bottom - 1, left, right - 1)), right - left, bottom - top);
    if (maxOf(detail.ink) >= MIN_INK) {
      ink = detail.ink; iw = detail.w; ih = detail.h;
      region = digitRegion(ink, iw, ih);
    }
  }
  for (let i = 0; i < ink.length; i++) if (!region[i]) ink[i] = 0;
  return { ink, w: iw, h: ih };
}

// stroke_width: twice the strong ink's area over its boundary length.
function strokeWidth(ink, w, h) {
  const threshold = f32(0.5 * maxOf(ink));
  const at = (y, x) => y >= 0 && y < h && x >= 0 && x < w && ink[y * w + x] >= threshold;
  let area = 0, edge = 0;
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      if (at(y, x)) {
        area++;
        if (!(at(y - 1, x) && at(y + 1, x) && at(y, x - 1) && at(y, x + 1))) edge++;
      }
  return (2.0 * area) / Math.max(edge, 1);
}

// thicken: strokes finer than MNIST's widened by a grey-scale max filter (Pillow's MaxFilter
// replicates the edge, which on the zero padding is a window clipped to the image).
function thicken(digit, w, h) {
  const pixels = Math.max(w, h) / 20.0;
  const width = strokeWidth(digit, w, h);
  let k = roundHalfEven(TARGET_STROKE * pixels - width);
  if (width >= MIN_STROKE * pixels || k < 2) return { digit, w, h };
  k |= 1;
  const p = k >> 1, pw = w + 2 * p, ph = h + 2 * p;
  const padded = new Uint8Array(pw * ph);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) padded[(y + p) * pw + x + p] = digit[y * w + x];
  const rows = new Uint8Array(pw * ph), out = new Float32Array(pw * ph);
  for (let y = 0; y < ph; y++)
    for (let x = 0; x < pw; x++) {
      let m = 0;
      for (let d = Math.max(0, x - p); d <= Math.min(pw - 1, x + p); d++) m = Math.max(m, padded[y * pw + d]);
      rows[y * pw + x] = m;
    }
  for (let y = 0; y < ph; y++)
    for (let x = 0; x < pw; x++) {
      let m = 0;
      for (let d = Math.max(0, y - p); d <= Math.min(ph - 1, y + p); d++) m = Math.max(m, rows[d * pw + x]);
      out[y * pw + x] = m;
    }
  return { digit: out, w: pw, h: ph };
}

// to_mnist after find_digit: drop faint noise, crop to the ink, fit into 20x20, centre by mass.
function fitDigit(found) {
  const { w: iw } = found;
  const peak = maxOf(found.ink);
  // peak is a Python float there: these products are float64, then rounded once to float32.
  const low = f32(NOISE_FRACTION * peak), span = f32((1 - NOISE_FRACTION) * peak);
  const ink = new Float32Array(found.ink.length);
  for (let i = 0; i < ink.length; i++) {
    const v = f32(f32(found.ink[i] - low) / span);
    ink[i] = f32(Math.min(1, Math.max(0, v)) * 255);
  }
  const b = bounds(ink.map((v) => (v > 0 ? 1 : 0)), iw, found.h);
  const t = thicken(crop(ink, iw, b.top, b.bottom, b.left, b.right), b.right - b.left + 1, b.bottom - b.top + 1);
  const scale = 20.0 / Math.max(t.w, t.h);
  const fw = Math.max(1, roundHalfEven(t.w * scale)), fh = Math.max(1, roundHalfEven(t.h * scale));
  const fitted = resizeLanczos(Uint8Array.from(t.digit, Math.trunc), t.w, t.h, fw, fh);
  let total = 0, sy = 0, sx = 0;
  for (let y = 0; y < fh; y++)
    for (let x = 0; x < fw; x++) {
      const v = fitted[y * fw + x];
      total += v; sy += y * v; sx += x * v;
    }
  if (total === 0) return null;
  const top = Math.min(Math.max(roundHalfEven(14 - sy / total), 0), 28 - fh);
  const left = Math.min(Math.max(roundHalfEven(14 - sx / total), 0), 28 - fw);
  const out = new Uint8Array(784);
  for (let y = 0; y < fh; y++) for (let x = 0; x < fw; x++) out[(y + top) * 28 + x + left] = fitted[y * fw + x];
  return out;
}

// The 28x28 model input (784 bytes, row-major, 0 = background, 255 = ink) of a grey image (one byte
// a pixel, light ink on black), or null when it holds no ink.
function toMnist(gray, w, h) {
  const found = findDigit(gray, w, h);
  return found === null ? null : fitDigit(found);
}

// Pillow's RGB -> L conversion (ITU-R 601-2 luma in 16-bit fixed point) of canvas RGBA pixels.
function rgbaToGray(rgba) {
  const gray = new Uint8Array(rgba.length / 4);
  for (let i = 0; i < gray.length; i++) {
    gray[i] = (rgba[4 * i] * 19595 + rgba[4 * i + 1] * 38470 + rgba[4 * i + 2] * 7471 + 0x8000) >> 16;
  }
  return gray;
}

const tinymnistPreprocess = { toMnist, rgbaToGray, resizeLanczos };
if (typeof module !== "undefined") module.exports = tinymnistPreprocess;

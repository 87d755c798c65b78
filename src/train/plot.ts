/**
 * The loss curve, with no plotting library: the notebook's matplotlib figure ("SFT Training Loss", a
 * 10×4 inch blue line with a light grid) drawn twice from one layout — as SVG text, and as a PNG rasterised
 * here (Bresenham lines on an RGB canvas, a built-in 5×7 bitmap font, a minimal PNG encoder on
 * `node:zlib` deflate + CRC-32) — plus unicode sparklines and a small block chart for the console.
 * The x axis is the optimizer step (the notebook plots the index of every 20th step, "Step (x20)");
 * validation losses appear as markers at the step they were measured.
 * @module
 */

import { deflateSync } from "node:zlib";
import { atomicWriteFile } from "../io/atomic.ts";
import { crc32 } from "../io/crc32.ts";
import type { LossPoint } from "./metrics.ts";

export { crc32 };

export type { LossPoint } from "./metrics.ts";

// ---------------------------------------------------------------------------------------------------------
// Layout shared by the SVG and the PNG

type RGB = readonly [number, number, number];
const WHITE: RGB = [255, 255, 255];
const BLACK: RGB = [0, 0, 0];
const GRID: RGB = [176, 176, 176]; // matplotlib's grid colour, drawn at alpha 0.3 as the notebook
const GRID_ALPHA = 0.3;
const TRAIN_COLOR: RGB = [0, 0, 255]; // the notebook's 'b-'
const VAL_COLOR: RGB = [255, 127, 14]; // matplotlib's orange

function hex(c: RGB): string {
  return "#" + c.map((v) => v.toString(16).padStart(2, "0")).join("");
}

/** Round to 12 significant digits: removes float noise from tick values (0.30000000000000004 → 0.3). */
function clean(x: number): number {
  return Number(x.toPrecision(12));
}

/** "Nice" ticks (1, 2 or 5 × 10^k apart) covering [lo, hi], about `target` of them. */
export function niceTicks(lo: number, hi: number, target = 5): number[] {
  if (!(hi > lo)) {
    const pad = lo === 0 ? 0.5 : Math.abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  const raw = (hi - lo) / target;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  const step = (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
  const first = Math.floor(lo / step + 1e-9), last = Math.ceil(hi / step - 1e-9);
  const ticks: number[] = [];
  for (let i = first; i <= last; i++) ticks.push(clean(i * step));
  return ticks;
}

function tickLabel(v: number, ticks: readonly number[]): string {
  const step = ticks.length > 1 ? Math.abs(ticks[1]! - ticks[0]!) : 1;
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  return v.toFixed(decimals);
}

interface Layout {
  width: number;
  height: number;
  /** Plot area: left, top, right, bottom in pixels. */
  l: number;
  t: number;
  r: number;
  b: number;
  xTicks: number[];
  yTicks: number[];
  x(step: number): number;
  y(loss: number): number;
  train: LossPoint[];
  val: LossPoint[];
  title: string;
}

function finite(p: LossPoint): boolean {
  return Number.isFinite(p.step) && Number.isFinite(p.loss);
}

function layout(
  train: readonly LossPoint[],
  val: readonly LossPoint[],
  o: { width: number; height: number; title: string },
): Layout {
  const tr = train.filter(finite), va = val.filter(finite);
  const all = [...tr, ...va];
  const steps = all.map((p) => p.step), losses = all.map((p) => p.loss);
  const xTicks = all.length ? niceTicks(Math.min(...steps), Math.max(...steps)) : niceTicks(0, 1);
  const yTicks = all.length ? niceTicks(Math.min(...losses), Math.max(...losses)) : niceTicks(0, 1);
  const l = 64, t = 34, r = o.width - 16, b = o.height - 44;
  const x0 = xTicks[0]!, x1 = xTicks[xTicks.length - 1]!, y0 = yTicks[0]!, y1 = yTicks[yTicks.length - 1]!;
  return {
    width: o.width,
    height: o.height,
    l,
    t,
    r,
    b,
    xTicks,
    yTicks,
    x: (s) => l + (s - x0) / (x1 - x0) * (r - l),
    y: (v) => b - (v - y0) / (y1 - y0) * (b - t),
    train: tr,
    val: va,
    title: o.title,
  };
}

// ---------------------------------------------------------------------------------------------------------
// SVG

/** Text made safe for SVG/XML content and attribute values. */
export function esc(s: string): string {
  return s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;");
}

const f1 = (v: number) => String(Math.round(v * 10) / 10);

function renderSvg(L: Layout): string {
  const o: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${L.width}" height="${L.height}" ` +
    `viewBox="0 0 ${L.width} ${L.height}" font-family="sans-serif" font-size="11">`,
    `<rect width="${L.width}" height="${L.height}" fill="${hex(WHITE)}"/>`,
    `<text x="${f1((L.l + L.r) / 2)}" y="22" text-anchor="middle" font-size="15">${esc(L.title)}</text>`,
    `<g stroke="${hex(GRID)}" stroke-opacity="${GRID_ALPHA}" stroke-width="1">`,
  ];
  for (const v of L.xTicks) o.push(`<line x1="${f1(L.x(v))}" y1="${L.t}" x2="${f1(L.x(v))}" y2="${L.b}"/>`);
  for (const v of L.yTicks) o.push(`<line x1="${L.l}" y1="${f1(L.y(v))}" x2="${L.r}" y2="${f1(L.y(v))}"/>`);
  o.push("</g>");
  o.push(`<rect x="${L.l}" y="${L.t}" width="${L.r - L.l}" height="${L.b - L.t}" fill="none" stroke="#000"/>`);
  o.push(`<g text-anchor="middle">`);
  for (const v of L.xTicks) {
    o.push(`<line x1="${f1(L.x(v))}" y1="${L.b}" x2="${f1(L.x(v))}" y2="${L.b + 4}" stroke="#000"/>`);
    o.push(`<text x="${f1(L.x(v))}" y="${L.b + 16}">${tickLabel(v, L.xTicks)}</text>`);
  }
  o.push(`</g><g text-anchor="end">`);
  for (const v of L.yTicks) {
    o.push(`<line x1="${L.l - 4}" y1="${f1(L.y(v))}" x2="${L.l}" y2="${f1(L.y(v))}" stroke="#000"/>`);
    o.push(`<text x="${L.l - 7}" y="${f1(L.y(v) + 4)}">${tickLabel(v, L.yTicks)}</text>`);
  }
  o.push("</g>");
  o.push(`<text x="${f1((L.l + L.r) / 2)}" y="${L.height - 8}" text-anchor="middle" font-size="12">Step</text>`);
  const ym = f1((L.t + L.b) / 2);
  o.push(`<text x="16" y="${ym}" text-anchor="middle" font-size="12" transform="rotate(-90 16 ${ym})">Loss</text>`);
  const pts = L.train.map((p) => `${f1(L.x(p.step))},${f1(L.y(p.loss))}`).join(" ");
  o.push(
    `<polyline fill="none" stroke="${hex(TRAIN_COLOR)}" stroke-width="2" stroke-linejoin="round" points="${pts}"/>`,
  );
  for (const p of L.val) {
    o.push(`<circle cx="${f1(L.x(p.step))}" cy="${f1(L.y(p.loss))}" r="4" fill="${hex(VAL_COLOR)}" stroke="#000"/>`);
  }
  // Legend, top right inside the plot area.
  const lx = L.r - 90, ly = L.t + 8;
  o.push(
    `<rect x="${lx}" y="${ly}" width="82" height="${L.val.length ? 40 : 22}" fill="#fff" stroke="#ccc"/>`,
    `<line x1="${lx + 6}" y1="${ly + 11}" x2="${lx + 26}" y2="${ly + 11}" stroke="${hex(TRAIN_COLOR)}" ` +
      `stroke-width="2"/>`,
    `<text x="${lx + 32}" y="${ly + 15}">train</text>`,
  );
  if (L.val.length) {
    o.push(
      `<circle cx="${lx + 16}" cy="${ly + 29}" r="4" fill="${hex(VAL_COLOR)}" stroke="#000"/>`,
      `<text x="${lx + 32}" y="${ly + 33}">val</text>`,
    );
  }
  o.push("</svg>", "");
  return o.join("\n");
}

// ---------------------------------------------------------------------------------------------------------
// Raster canvas, 5×7 font

/**
 * A 5×7 bitmap font with just the characters the chart writes (digits, `.-+e`, and the letters of its
 * title, labels and legend); each glyph is 7 rows of 5 bits, top row first. Other characters draw as a box.
 */
const FONT: Record<string, string> = {
  "0": "01110 10001 10011 10101 11001 10001 01110",
  "1": "00100 01100 00100 00100 00100 00100 01110",
  "2": "01110 10001 00001 00010 00100 01000 11111",
  "3": "11111 00010 00100 00010 00001 10001 01110",
  "4": "00010 00110 01010 10010 11111 00010 00010",
  "5": "11111 10000 11110 00001 00001 10001 01110",
  "6": "00110 01000 10000 11110 10001 10001 01110",
  "7": "11111 00001 00010 00100 01000 01000 01000",
  "8": "01110 10001 10001 01110 10001 10001 01110",
  "9": "01110 10001 10001 01111 00001 00010 01100",
  ".": "00000 00000 00000 00000 00000 01100 01100",
  "-": "00000 00000 00000 11111 00000 00000 00000",
  "+": "00000 00100 00100 11111 00100 00100 00000",
  " ": "00000 00000 00000 00000 00000 00000 00000",
  "F": "11111 10000 10000 11110 10000 10000 10000",
  "L": "10000 10000 10000 10000 10000 10000 11111",
  "S": "01111 10000 10000 01110 00001 00001 11110",
  "T": "11111 00100 00100 00100 00100 00100 00100",
  "a": "00000 00000 01110 00001 01111 10001 01111",
  "e": "00000 00000 01110 10001 11111 10000 01110",
  "g": "00000 00000 01111 10001 01111 00001 01110",
  "i": "00100 00000 01100 00100 00100 00100 01110",
  "l": "01100 00100 00100 00100 00100 00100 01110",
  "n": "00000 00000 10110 11001 10001 10001 10001",
  "o": "00000 00000 01110 10001 10001 10001 01110",
  "p": "00000 00000 11110 10001 11110 10000 10000",
  "r": "00000 00000 10110 11001 10000 10000 10000",
  "s": "00000 00000 01110 10000 01110 00001 11110",
  "t": "01000 01000 11100 01000 01000 01001 00110",
  "v": "00000 00000 10001 10001 10001 01010 00100",
  "x": "00000 00000 10001 01010 00100 01010 10001",
};
const BOX = "11111 10001 10001 10001 10001 10001 11111";

/** An RGB image, 3 bytes per pixel, rows top to bottom. */
export class Canvas {
  readonly data: Uint8Array;
  constructor(readonly width: number, readonly height: number, background: RGB = WHITE) {
    this.data = new Uint8Array(width * height * 3);
    for (let i = 0; i < width * height; i++) this.data.set(background, i * 3);
  }

  /** Paints pixel (x, y) with `color` at opacity `alpha` over what is there; outside the image: ignored. */
  set(x: number, y: number, color: RGB, alpha = 1): void {
    x = Math.round(x);
    y = Math.round(y);
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return;
    const i = (y * this.width + x) * 3;
    for (let c = 0; c < 3; c++) this.data[i + c] = Math.round(this.data[i + c]! * (1 - alpha) + color[c]! * alpha);
  }

  /** The pixel at (x, y). */
  get(x: number, y: number): RGB {
    const i = (y * this.width + x) * 3;
    return [this.data[i]!, this.data[i + 1]!, this.data[i + 2]!];
  }

  /** A line by Bresenham's algorithm, `thickness` pixels wide (a square brush). */
  line(
    x0: number,
    y0: number,
    x1: number,
    y1: number,
    style: { color: RGB; alpha?: number; thickness?: number },
  ): void {
    x0 = Math.round(x0), y0 = Math.round(y0), x1 = Math.round(x1), y1 = Math.round(y1);
    const th = style.thickness ?? 1, off = Math.floor((th - 1) / 2);
    const dx = Math.abs(x1 - x0), dy = -Math.abs(y1 - y0);
    const sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    let err = dx + dy;
    for (;;) {
      for (let a = 0; a < th; a++) {
        for (let b = 0; b < th; b++) this.set(x0 + a - off, y0 + b - off, style.color, style.alpha);
      }
      if (x0 === x1 && y0 === y1) break;
      const e2 = 2 * err;
      if (e2 >= dy) {
        err += dy;
        x0 += sx;
      }
      if (e2 <= dx) {
        err += dx;
        y0 += sy;
      }
    }
  }

  /** A filled disc. */
  disc(cx: number, cy: number, r: number, color: RGB): void {
    for (let y = -r; y <= r; y++) {
      for (let x = -r; x <= r; x++) if (x * x + y * y <= r * r + r) this.set(cx + x, cy + y, color);
    }
  }

  /**
   * Text in the 5×7 font, top-left at (x, y), `scale` pixels per font pixel, 1 font pixel between letters;
   * `up`: rotated 90° counter-clockwise, reading bottom to top from (x, y) as its bottom-left.
   */
  text(s: string, x: number, y: number, o: { color?: RGB; scale?: number; up?: boolean } = {}): void {
    const sc = o.scale ?? 1, color = o.color ?? BLACK;
    let pen = 0;
    for (const ch of s) {
      const rows = (FONT[ch] ?? BOX).split(" ");
      for (let gy = 0; gy < 7; gy++) {
        for (let gx = 0; gx < 5; gx++) {
          if (rows[gy]![gx] !== "1") continue;
          for (let a = 0; a < sc; a++) {
            for (let b = 0; b < sc; b++) {
              const u = (pen + gx) * sc + a, v = gy * sc + b; // along the text, down the glyph
              if (o.up) this.set(x + v, y - u, color);
              else this.set(x + u, y + v, color);
            }
          }
        }
      }
      pen += 6;
    }
  }
}

/** Width in pixels of `s` drawn by {@link Canvas.text}. */
export function textWidth(s: string, scale = 1): number {
  const n = [...s].length;
  return n === 0 ? 0 : (n * 6 - 1) * scale;
}

function renderRaster(L: Layout): Canvas {
  const c = new Canvas(L.width, L.height);
  for (const v of L.xTicks) c.line(L.x(v), L.t, L.x(v), L.b, { color: GRID, alpha: GRID_ALPHA });
  for (const v of L.yTicks) c.line(L.l, L.y(v), L.r, L.y(v), { color: GRID, alpha: GRID_ALPHA });
  c.line(L.l, L.t, L.r, L.t, { color: BLACK });
  c.line(L.l, L.b, L.r, L.b, { color: BLACK });
  c.line(L.l, L.t, L.l, L.b, { color: BLACK });
  c.line(L.r, L.t, L.r, L.b, { color: BLACK });
  for (const v of L.xTicks) {
    const s = tickLabel(v, L.xTicks);
    c.line(L.x(v), L.b, L.x(v), L.b + 4, { color: BLACK });
    c.text(s, Math.round(L.x(v) - textWidth(s) / 2), L.b + 8);
  }
  for (const v of L.yTicks) {
    const s = tickLabel(v, L.yTicks);
    c.line(L.l - 4, L.y(v), L.l, L.y(v), { color: BLACK });
    c.text(s, L.l - 7 - textWidth(s), Math.round(L.y(v) - 3));
  }
  c.text(L.title, Math.round((L.l + L.r - textWidth(L.title, 2)) / 2), 10, { scale: 2 });
  c.text("Step", Math.round((L.l + L.r - textWidth("Step")) / 2), L.height - 16);
  c.text("Loss", 10, Math.round((L.t + L.b + textWidth("Loss")) / 2), { up: true });
  for (let i = 1; i < L.train.length; i++) {
    const p = L.train[i - 1]!, q = L.train[i]!;
    c.line(L.x(p.step), L.y(p.loss), L.x(q.step), L.y(q.loss), { color: TRAIN_COLOR, thickness: 2 });
  }
  if (L.train.length === 1) c.disc(L.x(L.train[0]!.step), L.y(L.train[0]!.loss), 1, TRAIN_COLOR);
  for (const p of L.val) {
    c.disc(L.x(p.step), L.y(p.loss), 4, BLACK);
    c.disc(L.x(p.step), L.y(p.loss), 3, VAL_COLOR);
  }
  const lx = L.r - 90, ly = L.t + 8, lh = L.val.length ? 40 : 22;
  for (let y = ly; y <= ly + lh; y++) c.line(lx, y, lx + 82, y, { color: WHITE });
  c.line(lx, ly, lx + 82, ly, { color: [204, 204, 204] });
  c.line(lx, ly + lh, lx + 82, ly + lh, { color: [204, 204, 204] });
  c.line(lx, ly, lx, ly + lh, { color: [204, 204, 204] });
  c.line(lx + 82, ly, lx + 82, ly + lh, { color: [204, 204, 204] });
  c.line(lx + 6, ly + 11, lx + 26, ly + 11, { color: TRAIN_COLOR, thickness: 2 });
  c.text("train", lx + 32, ly + 8);
  if (L.val.length) {
    c.disc(lx + 16, ly + 29, 4, BLACK);
    c.disc(lx + 16, ly + 29, 3, VAL_COLOR);
    c.text("val", lx + 32, ly + 26);
  }
  return c;
}

// ---------------------------------------------------------------------------------------------------------
// PNG

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  dv.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/** The PNG file signature. */
export const PNG_SIGNATURE: Uint8Array = new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]);

/**
 * A PNG of an 8-bit RGB image (`rgb`: width·height·3 bytes, rows top to bottom): signature, IHDR (colour
 * type 2, no interlace), one IDAT (every row with filter type 0, zlib-deflated), IEND.
 */
export function encodePng(width: number, height: number, rgb: Uint8Array): Uint8Array {
  if (rgb.length !== width * height * 3) {
    throw new Error(
      `Cannot encode PNG: want ${width * height * 3} bytes for ${width}×${height} RGB, got ${rgb.length}`,
    );
  }
  const ihdr = new Uint8Array(13);
  const dv = new DataView(ihdr.buffer);
  dv.setUint32(0, width);
  dv.setUint32(4, height);
  ihdr.set([8, 2, 0, 0, 0], 8); // bit depth 8, colour type 2 (RGB), deflate, adaptive filtering, no interlace
  const stride = width * 3;
  const raw = new Uint8Array((stride + 1) * height);
  for (let y = 0; y < height; y++) raw.set(rgb.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
  const idat = new Uint8Array(deflateSync(raw));
  const parts = [PNG_SIGNATURE, chunk("IHDR", ihdr), chunk("IDAT", idat), chunk("IEND", new Uint8Array(0))];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Entry points

/** What {@link writeLossCurve} draws. */
export interface LossCurveOptions {
  /** Train loss per logged step. Non-finite points are left out. */
  train: readonly LossPoint[];
  /** Validation loss, one point per epoch at the step it was measured. */
  val?: readonly LossPoint[];
  /** Output path without extension: writes `outBase.svg` and `outBase.png`. */
  outBase: string;
  /** Default "SFT Training Loss" (the PNG's font knows only the letters of the default title). */
  title?: string;
  /** Pixels; default 800×320 (the notebook's figsize 10×4 at 80 dpi). */
  width?: number;
  height?: number;
}

/** The chart as SVG text and as PNG bytes, without writing anything. */
export function renderLossCurve(o: Omit<LossCurveOptions, "outBase">): { svg: string; png: Uint8Array } {
  const L = layout(o.train, o.val ?? [], {
    width: o.width ?? 800,
    height: o.height ?? 320,
    title: o.title ?? "SFT Training Loss",
  });
  const canvas = renderRaster(L);
  return { svg: renderSvg(L), png: encodePng(canvas.width, canvas.height, canvas.data) };
}

/** Writes `outBase.svg` and `outBase.png` (each atomically: a temporary file, then renamed); returns paths. */
export async function writeLossCurve(o: LossCurveOptions): Promise<{ svg: string; png: string }> {
  const { svg, png } = renderLossCurve(o);
  const paths = { svg: `${o.outBase}.svg`, png: `${o.outBase}.png` };
  await atomicWriteFile(paths.svg, svg);
  await atomicWriteFile(paths.png, png);
  return paths;
}

// ---------------------------------------------------------------------------------------------------------
// Console

/** The eighth-height block characters, lowest first. */
export const BLOCKS = "▁▂▃▄▅▆▇█";

/** `values` resampled to `width` buckets by averaging (non-finite values ignored; empty bucket: NaN). */
export function resample(values: readonly number[], width: number): number[] {
  if (values.length <= width) return [...values];
  const out: number[] = [];
  for (let i = 0; i < width; i++) {
    const a = Math.floor(i * values.length / width), b = Math.floor((i + 1) * values.length / width);
    let sum = 0, n = 0;
    for (let j = a; j < b; j++) {
      if (Number.isFinite(values[j])) {
        sum += values[j]!;
        n++;
      }
    }
    out.push(n ? sum / n : NaN);
  }
  return out;
}

/**
 * A small block chart of the train loss for the console: `height` rows of columns filled from the bottom
 * in eighths of a cell, the max and min loss on the left, the first and last step underneath.
 */
export function terminalChart(train: readonly LossPoint[], o: { width?: number; height?: number } = {}): string {
  const width = o.width ?? 60, height = o.height ?? 8;
  const pts = train.filter(finite);
  if (pts.length === 0) return "(no loss values yet)";
  const v = resample(pts.map((p) => p.loss), width);
  const fin = v.filter(Number.isFinite);
  const lo = Math.min(...fin), hi = Math.max(...fin);
  const hiS = hi.toFixed(4), loS = lo.toFixed(4);
  const pad = Math.max(hiS.length, loS.length);
  const lines: string[] = [];
  for (let row = height - 1; row >= 0; row--) {
    let line = "";
    for (const x of v) {
      // Column height in eighths of a cell; at least one eighth so the minimum stays visible.
      const eighths = !Number.isFinite(x) ? 0 : hi > lo ? 1 + Math.round((x - lo) / (hi - lo) * (height * 8 - 1)) : 4;
      const fill = eighths - row * 8;
      line += fill >= 8 ? "█" : fill <= 0 ? " " : BLOCKS[fill - 1]!;
    }
    const label = row === height - 1 ? hiS : row === 0 ? loS : "";
    lines.push(`${label.padStart(pad)} ┤${line}`);
  }
  const first = String(pts[0]!.step), last = String(pts[pts.length - 1]!.step);
  const axis = `${" ".repeat(pad)} └${"─".repeat(v.length)}`;
  // the last step's label ends under the last column, and at least one space after the first's
  const steps = `${" ".repeat(pad + 2)}${first}${last.padStart(Math.max(last.length + 1, v.length - first.length))}`;
  lines.push(axis, steps + "  step");
  return lines.join("\n");
}

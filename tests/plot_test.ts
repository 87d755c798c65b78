// The loss-curve picture (src/train/plot.ts): the PNG is decoded back (chunks, CRCs, zlib inflate,
// filter bytes) and sampled; the SVG is checked structurally. Pixel checks are exact colour matches
// (the rasteriser paints opaque colours, no anti-aliasing).
import { describe, expect, test } from "bun:test";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Buffer } from "node:buffer";
import { inflateSync } from "node:zlib";
import {
  Canvas,
  crc32,
  encodePng,
  niceTicks,
  PNG_SIGNATURE,
  renderLossCurve,
  terminalChart,
  writeLossCurve,
} from "../src/train/plot.ts";
import { sparkline } from "./helpers/sparkline.ts";

interface Decoded {
  width: number;
  height: number;
  chunks: string[];
  pixel(x: number, y: number): [number, number, number];
}

/** A PNG reader just for 8-bit RGB, filter 0 — what encodePng writes; checks every CRC. */
function decodePng(png: Uint8Array): Decoded {
  expect([...png.subarray(0, 8)]).toEqual([...PNG_SIGNATURE]);
  const dv = new DataView(png.buffer, png.byteOffset, png.byteLength);
  const chunks: string[] = [];
  const idat: Uint8Array[] = [];
  let ihdr: Uint8Array | undefined;
  let off = 8;
  while (off < png.length) {
    const len = dv.getUint32(off);
    const type = String.fromCharCode(...png.subarray(off + 4, off + 8));
    const data = png.subarray(off + 8, off + 8 + len);
    expect(dv.getUint32(off + 8 + len)).toBe(crc32(png.subarray(off + 4, off + 8 + len)));
    chunks.push(type);
    if (type === "IHDR") ihdr = data;
    if (type === "IDAT") idat.push(data);
    off += 12 + len;
  }
  expect(off).toBe(png.length);
  const h = new DataView(ihdr!.buffer, ihdr!.byteOffset, 13);
  const width = h.getUint32(0), height = h.getUint32(4);
  expect([...ihdr!.subarray(8)]).toEqual([8, 2, 0, 0, 0]);
  const raw = new Uint8Array(inflateSync(Buffer.concat(idat)));
  expect(raw.length).toBe((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) expect(raw[y * (width * 3 + 1)]).toBe(0);
  return {
    width,
    height,
    chunks,
    pixel: (x, y) => {
      const i = y * (width * 3 + 1) + 1 + x * 3;
      return [raw[i]!, raw[i + 1]!, raw[i + 2]!];
    },
  };
}

const train = Array.from({ length: 50 }, (_, i) => ({ step: (i + 1) * 20, loss: 3 * Math.exp(-i / 15) + 0.2 }));
const val = [{ step: 340, loss: 1.1 }, { step: 680, loss: 0.6 }, { step: 1000, loss: 0.5 }];

describe("png", () => {
  test("crc32 of the standard check string", () => {
    expect(crc32(new TextEncoder().encode("123456789"))).toBe(0xcbf43926);
  });

  test("encodePng round-trips a tiny image", () => {
    const rgb = new Uint8Array([255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30]);
    const d = decodePng(encodePng(2, 2, rgb));
    expect(d.chunks).toEqual(["IHDR", "IDAT", "IEND"]);
    expect([d.width, d.height]).toEqual([2, 2]);
    expect(d.pixel(1, 1)).toEqual([10, 20, 30]);
    expect(() => encodePng(2, 2, new Uint8Array(3))).toThrow("Cannot encode PNG");
  });

  test("the loss curve PNG has the plot drawn on a white background", () => {
    const { png } = renderLossCurve({ train, val });
    const d = decodePng(png);
    expect([d.width, d.height]).toEqual([800, 320]);
    let blue = 0, orange = 0, black = 0, white = 0;
    for (let y = 0; y < d.height; y++) {
      for (let x = 0; x < d.width; x++) {
        const [r, g, b] = d.pixel(x, y);
        if (r === 0 && g === 0 && b === 255) blue++;
        else if (r === 255 && g === 127 && b === 14) orange++;
        else if (r === 0 && g === 0 && b === 0) black++;
        else if (r === 255 && g === 255 && b === 255) white++;
      }
    }
    expect(d.pixel(0, 0)).toEqual([255, 255, 255]);
    expect(blue).toBeGreaterThan(500); // a 2-px line across ~700 px
    expect(orange).toBeGreaterThan(3 * 20); // three val markers (radius 3)
    expect(black).toBeGreaterThan(1000); // frame, ticks, text
    expect(white).toBeGreaterThan(0.8 * d.width * d.height);
  });
});

describe("svg", () => {
  test("one polyline point per train point, one marker per val point, labels and title", () => {
    const { svg } = renderLossCurve({ train, val });
    const m = /<polyline[^>]* points="([^"]*)"/.exec(svg);
    expect(m).not.toBeNull();
    expect(m![1]!.trim().split(/\s+/)).toHaveLength(train.length);
    expect(svg.match(/<circle /g)).toHaveLength(val.length + 1); // + the legend's marker
    for (const s of ["SFT Training Loss", ">Step<", ">Loss<", 'stroke-opacity="0.3"']) expect(svg).toContain(s);
    expect(svg.startsWith("<svg ")).toBe(true);
    expect(svg.trimEnd().endsWith("</svg>")).toBe(true);
  });

  test("non-finite losses are left out; an empty chart still renders", () => {
    const { svg } = renderLossCurve({ train: [{ step: 1, loss: 2 }, { step: 2, loss: NaN }, { step: 3, loss: 1 }] });
    expect(/points="([^"]*)"/.exec(svg)![1]!.split(" ")).toHaveLength(2);
    expect(renderLossCurve({ train: [] }).svg).toContain("SFT Training Loss");
  });

  test("niceTicks", () => {
    expect(niceTicks(20, 1000)).toEqual([0, 200, 400, 600, 800, 1000]);
    expect(niceTicks(0.21, 3.2)).toEqual([0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5]);
    expect(niceTicks(1, 1)).toEqual([0.9, 0.95, 1, 1.05, 1.1]);
  });
});

test("writeLossCurve writes .svg and .png atomically", async () => {
  const dir = await mkdtemp(join(tmpdir(), "plot-"));
  try {
    const paths = await writeLossCurve({ train, val, outBase: join(dir, "runs", "loss") });
    expect((await readdir(join(dir, "runs"))).sort()).toEqual(["loss.png", "loss.svg"]);
    decodePng(new Uint8Array(await readFile(paths.png)));
    expect(await readFile(paths.svg, "utf8")).toContain("<polyline");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

describe("console charts", () => {
  test("sparkline maps min to ▁ and max to █, averaging long series", () => {
    expect(sparkline([1, 2, 3, 4, 5, 6, 7, 8])).toBe("▁▂▃▄▅▆▇█");
    expect(sparkline([3, 3])).toBe("▄▄");
    expect(sparkline([1, NaN, 2])).toBe("▁ █");
    expect([...sparkline(train.map((p) => p.loss), 10)]).toHaveLength(10);
  });

  test("terminalChart's step labels keep a space between them on a narrow chart", () => {
    const few = [20, 40, 60, 80, 100].map((step, i) => ({ step, loss: 5 - i }));
    const last = terminalChart(few, { width: 60, height: 2 }).split("\n").at(-1)!;
    expect(last.trim()).toBe("20 100  step");
  });

  test("terminalChart has height rows plus axis and step labels", () => {
    const lines = terminalChart(train, { width: 60, height: 4 }).split("\n");
    expect(lines).toHaveLength(6);
    expect(lines[0]!.startsWith(train[0]!.loss.toFixed(4))).toBe(true);
    expect(lines[0]).toContain("█"); // the first (highest) column reaches the top row
    expect(lines[5]).toContain("1000");
    expect(terminalChart([])).toBe("(no loss values yet)");
  });

  test("canvas text draws glyph pixels", () => {
    const c = new Canvas(20, 10);
    c.text("1", 0, 0);
    expect(c.get(2, 0)).toEqual([0, 0, 0]); // top of the "1"
    expect(c.get(0, 0)).toEqual([255, 255, 255]);
  });
});

/**
 * The training view: the progress of a run (step, loss, tokens/s, ETA) and its loss curve on a canvas,
 * updated from the step lines training prints (`Step   10/125 | Loss: 2.1234 | … | 1,234 tok/s | … | ETA 3s`,
 * `formatStepLine` in src/train/metrics.ts).
 * @module
 */

/** The curve's colour (the test looks for it in a screenshot). */
export const CURVE_COLOUR = "#d62728";

const STEP_LINE = /^Step\s+(\d+)(?:\/(\d+))?\s+\|\s+Loss:\s+([\d.]+)(.*)$/;

/** One point of the curve. */
interface Point {
  step: number;
  loss: number;
}

/** The view, appended to `parent`; feed it every printed line. */
export class TrainingView {
  readonly #status: HTMLElement;
  readonly #canvas: HTMLCanvasElement;
  readonly #points: Point[] = [];
  #total = 0;

  constructor(parent: HTMLElement) {
    const section = document.createElement("section");
    section.id = "training";
    const title = document.createElement("h2");
    title.textContent = "Training";
    this.#status = document.createElement("p");
    this.#status.id = "progress";
    this.#status.textContent = "waiting for the first step";
    this.#canvas = document.createElement("canvas");
    this.#canvas.id = "loss-curve";
    this.#canvas.width = 480;
    this.#canvas.height = 240;
    section.append(title, this.#status, this.#canvas);
    parent.append(section);
    this.#draw();
  }

  /** Take one printed line; step lines move the view on. */
  line(text: string): void {
    const m = STEP_LINE.exec(text.trim());
    if (!m) return;
    const step = Number(m[1]), loss = Number(m[3]);
    if (m[2]) this.#total = Number(m[2]);
    this.#points.push({ step, loss });
    const rest = m[4] ?? "";
    const tps = /([\d,]+) tok\/s/.exec(rest)?.[1] ?? "?";
    const eta = /ETA (\S+)/.exec(rest)?.[1] ?? "?";
    this.#status.textContent = `step ${step}${this.#total ? ` of ${this.#total}` : ""} · loss ${loss.toFixed(4)} · ` +
      `${tps} tokens/s · ETA ${eta}`;
    this.#draw();
  }

  #draw(): void {
    const ctx = this.#canvas.getContext("2d");
    if (!ctx) return;
    const { width: w, height: h } = this.#canvas;
    const pad = 32;
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, w, h);
    ctx.strokeStyle = "#888888";
    ctx.lineWidth = 1;
    ctx.strokeRect(pad, 8, w - pad - 8, h - pad - 8);
    ctx.fillStyle = "#333333";
    ctx.font = "12px sans-serif";
    ctx.fillText("loss", 2, 20);
    ctx.fillText("step", w - 36, h - 8);
    if (this.#points.length === 0) return;
    const maxStep = Math.max(this.#total, ...this.#points.map((p) => p.step), 1);
    const maxLoss = Math.max(...this.#points.map((p) => p.loss), 1e-6);
    const x = (s: number) => pad + (s / maxStep) * (w - pad - 8);
    const y = (l: number) => 8 + (1 - l / maxLoss) * (h - pad - 8);
    ctx.fillText(maxLoss.toFixed(2), 2, 34);
    ctx.strokeStyle = CURVE_COLOUR;
    ctx.lineWidth = 3;
    ctx.beginPath();
    this.#points.forEach((p, i) => (i === 0 ? ctx.moveTo(x(p.step), y(p.loss)) : ctx.lineTo(x(p.step), y(p.loss))));
    ctx.stroke();
    ctx.fillStyle = CURVE_COLOUR;
    for (const p of this.#points) ctx.fillRect(x(p.step) - 3, y(p.loss) - 3, 6, 6);
  }
}

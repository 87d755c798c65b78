/**
 * The MLP activations of {@link Activation} as scalar float64 functions, each with its formula and its
 * derivative: what the reference loops (reference.ts `geluForward` / `geluBackward`) compute per element,
 * and so the spec that the WGSL kernels (`kernels/gelu_forward.wgsl`, `gelu_backward.wgsl`) match.
 * @module
 */

import type { Activation } from "../backend.ts";

/** One activation: its value f(x) and its derivative f'(x), in float64. */
export interface ActivationMath {
  f(x: number): number;
  df(x: number): number;
}

/** √(2/π), the constant in the tanh form of GELU. */
const GELU_SCALE = Math.sqrt(2 / Math.PI);
/** The cubic coefficient of the tanh form of GELU. */
const GELU_CUBIC = 0.044715;
/** quick_gelu's slope: x·σ(1.702·x). */
const QUICK_GELU_SLOPE = 1.702;

/**
 * tanh(u) = 1 − 2/(e^{2u} + 1), in float64. About twice as fast as Math.tanh in V8 and JavaScriptCore; exact
 * at ±∞ (e^{2u} overflows to ∞ or underflows to 0); near 0 its absolute error is ~1e-16, which is all that
 * GELU's 1 + tanh(u) sees.
 */
function tanh(u: number): number {
  return 1 - 2 / (Math.exp(2 * u) + 1);
}

/** σ(x) = 1/(1 + e^−x); 0 once e^−x overflows (x < −709), 1 for large x. */
function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

/**
 * erfc(z) = 1 − erf(z) in float64 (JavaScript has no Math.erf), within 1e-13 relative of Python's math.erfc
 * (1e-16 mostly; 1 − erf cancels a little just below z = 2):
 * - |z| < 2: erf(z) = (2/√π)·e^{−z²}·Σₙ 2ⁿ·z^{2n+1}/(1·3·…·(2n+1)), a series of terms of one sign (no
 *   cancellation), summed until a term no longer changes the sum;
 * - z ≥ 2: the continued fraction erfc(z) = e^{−z²}/√π · 1/(z + (1/2)/(z + (2/2)/(z + (3/2)/(z + …)))),
 *   60 levels deep (converged to float64 for z ≥ 2);
 * - z ≤ −2: 2 − erfc(−z).
 * Computing erfc directly (not 1 − erf) keeps exact GELU's left tail, 0.5·x·erfc(−x/√2), accurate.
 */
export function erfc(z: number): number {
  if (Number.isNaN(z)) return NaN;
  if (z <= -2) return 2 - erfc(-z);
  if (z >= 2) {
    if (z > 27) return 0; // e^{−z²} underflows
    let f = z;
    for (let k = 60; k >= 1; k--) f = z + (k / 2) / f;
    return Math.exp(-z * z) / (Math.sqrt(Math.PI) * f);
  }
  let term = z, sum = z;
  for (let n = 1; n < 200; n++) {
    term *= (2 * z * z) / (2 * n + 1);
    const next = sum + term;
    if (next === sum) break;
    sum = next;
  }
  return 1 - (2 / Math.sqrt(Math.PI)) * Math.exp(-z * z) * sum;
}

/** The activations, by name. */
export const ACTIVATION_MATHS: Readonly<Record<Activation, ActivationMath>> = {
  /**
   * gelu_new(x) = 0.5·x·(1 + th), th = tanh(u), u = √(2/π)·(x + 0.044715·x³);
   * gelu_new'(x) = 0.5·(1 + th) + 0.5·x·(1 − th²)·du/dx,  du/dx = √(2/π)·(1 + 3·0.044715·x²)
   * (1 − th² = sech²(u); this form cannot overflow, unlike 1/cosh²).
   */
  gelu_new: {
    f: (x) => 0.5 * x * (1 + tanh(GELU_SCALE * (x + GELU_CUBIC * x * x * x))),
    df(x) {
      const th = tanh(GELU_SCALE * (x + GELU_CUBIC * x * x * x));
      const dudx = GELU_SCALE * (1 + 3 * GELU_CUBIC * x * x);
      return 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * dudx;
    },
  },
  /**
   * gelu(x) = x·Φ(x), Φ(x) = 0.5·erfc(−x/√2) the normal CDF;
   * gelu'(x) = Φ(x) + x·φ(x),  φ(x) = e^{−x²/2}/√(2π) the normal density.
   */
  gelu: {
    f: (x) => 0.5 * x * erfc(-x / Math.SQRT2),
    df: (x) => 0.5 * erfc(-x / Math.SQRT2) + x * Math.exp(-0.5 * x * x) / Math.sqrt(2 * Math.PI),
  },
  /** relu(x) = max(x, 0);  relu'(x) = 1 for x > 0, else 0 (0 at x = 0, as PyTorch's backward). */
  relu: {
    f: (x) => (x > 0 ? x : 0),
    df: (x) => (x > 0 ? 1 : 0),
  },
  /** silu(x) = x·σ(x);  silu'(x) = σ(x)·(1 + x·(1 − σ(x))). */
  silu: {
    f: (x) => x * sigmoid(x),
    df(x) {
      const s = sigmoid(x);
      return s * (1 + x * (1 - s));
    },
  },
  /** quick_gelu(x) = x·σ(a·x), a = 1.702;  quick_gelu'(x) = s + a·x·s·(1 − s), s = σ(a·x). */
  quick_gelu: {
    f: (x) => x * sigmoid(QUICK_GELU_SLOPE * x),
    df(x) {
      const s = sigmoid(QUICK_GELU_SLOPE * x);
      return s + QUICK_GELU_SLOPE * x * s * (1 - s);
    },
  },
};

/** The maths of `activation` (default `gelu_new`); an unknown name is an error naming the op. */
export function activationMath(activation: Activation | undefined, op: string): ActivationMath {
  const m = ACTIVATION_MATHS[activation ?? "gelu_new"];
  if (!m) throw new Error(`${op}: unknown activation ${JSON.stringify(activation)}`);
  return m;
}

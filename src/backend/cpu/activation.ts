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

// W. J. Cody's rational Chebyshev approximations ("Rational Chebyshev approximations for the error function",
// Math. Comp. 23 (1969) 631–638; the coefficients of his CALERF): erf on |z| ≤ 0.46875, e^{z²}·erfc(z) on
// (0.46875, 4] and, in 1/z², on (4, ∞).
const ERF_A = [3.16112374387056560e0, 1.13864154151050156e2, 3.77485237685302021e2, 3.20937758913846947e3];
const ERF_A4 = 1.85777706184603153e-1;
const ERF_B = [2.36012909523441209e1, 2.44024637934444173e2, 1.28261652607737228e3, 2.84423683343917062e3];
const ERFC_C = [
  5.64188496988670089e-1,
  8.88314979438837594e0,
  6.61191906371416295e1,
  2.98635138197400131e2,
  8.81952221241769090e2,
  1.71204761263407058e3,
  2.05107837782607147e3,
  1.23033935479799725e3,
];
const ERFC_C8 = 2.15311535474403846e-8;
const ERFC_D = [
  1.57449261107098347e1,
  1.17693950891312499e2,
  5.37181101862009858e2,
  1.62138957456669019e3,
  3.29079923573345963e3,
  4.36261909014324716e3,
  3.43936767414372164e3,
  1.23033935480374942e3,
];
const ERFC_P = [
  3.05326634961232344e-1,
  3.60344899949804439e-1,
  1.25781726111229246e-1,
  1.60837851487422766e-2,
  6.58749161529837803e-4,
];
const ERFC_P5 = 1.63153871373020978e-2;
const ERFC_Q = [
  2.56852019228982242e0,
  1.87295284992346047e0,
  5.27905102951428412e-1,
  6.05183413124413191e-2,
  2.33520497626869185e-3,
];

/**
 * erfc(z) = 1 − erf(z) in float64 (JavaScript has no Math.erf), by Cody's approximations (above): within
 * 1e-15 relative of Python's math.erfc (8e-16 at worst on 20 001 points over [−6, 27]):
 * - |z| ≤ 0.46875: erf(z) = z·A(z²)/B(z²), quartic over quartic, and erfc = 1 − erf;
 * - 0.46875 < |z| ≤ 4: erfc(|z|) = e^{−z²}·C(|z|)/D(|z|), degree 8 over 8;
 * - |z| > 4: erfc(|z|) = e^{−z²}/|z| · (1/√π − w·P(w)/Q(w)), w = 1/z² (the asymptotic series, fitted);
 * - z < 0: erfc(z) = 2 − erfc(|z|).
 * e^{−z²} is e^{−s²}·e^{−(|z|−s)(|z|+s)} with s = |z| rounded down to a multiple of 1/16 (s² is exact), so
 * that the rounding of z² is not magnified by the exponential. Computing erfc directly (not 1 − erf) keeps
 * exact GELU's left tail, 0.5·x·erfc(−x/√2), accurate.
 */
export function erfc(z: number): number {
  const y = Math.abs(z);
  if (!(y > 0.46875)) { // NaN too
    const t = y * y;
    let num = ERF_A4 * t, den = t;
    for (let i = 0; i < 3; i++) {
      num = (num + ERF_A[i]!) * t;
      den = (den + ERF_B[i]!) * t;
    }
    return 1 - (z * (num + ERF_A[3]!)) / (den + ERF_B[3]!);
  }
  if (y > 27.3) return z < 0 ? 2 : 0; // erfc(27.3) < 1e-324: underflowed (∞ too)
  let r: number; // e^{y²}·erfc(y)
  if (y <= 4) {
    let num = ERFC_C8 * y, den = y;
    for (let i = 0; i < 7; i++) {
      num = (num + ERFC_C[i]!) * y;
      den = (den + ERFC_D[i]!) * y;
    }
    r = (num + ERFC_C[7]!) / (den + ERFC_D[7]!);
  } else {
    const w = 1 / (y * y);
    let num = ERFC_P5 * w, den = w;
    for (let i = 0; i < 4; i++) {
      num = (num + ERFC_P[i]!) * w;
      den = (den + ERFC_Q[i]!) * w;
    }
    r = (1 / Math.sqrt(Math.PI) - (w * (num + ERFC_P[4]!)) / (den + ERFC_Q[4]!)) / y;
  }
  const s = Math.trunc(y * 16) / 16;
  const e = r * Math.exp(-s * s) * Math.exp(-(y - s) * (y + s));
  return z < 0 ? 2 - e : e;
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

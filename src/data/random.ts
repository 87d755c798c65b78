/**
 * CPython's `random.Random` for integer seeds, reproduced exactly: the same Mersenne Twister (MT19937),
 * the same seeding (`init_by_array` over the seed's 32-bit words), and the same algorithms on top of it
 * (`random`, `getrandbits`, `_randbelow`, `randrange`, `randint`, `choice`, `shuffle`, `sample`,
 * `uniform`). `new PyRandom(42).randint(1000, 9999)` returns what Python's
 * `random.Random(42).randint(1000, 9999)` returns, so the notebook's generated data can be rebuilt byte
 * for byte.
 *
 * Integers are JS numbers and must stay within 2^53 (every use in this project does); `getrandbitsBig`
 * gives any width as a bigint.
 *
 * @example
 * ```ts
 * const rng = new PyRandom(42);
 * rng.randint(1000, 9999); // 2824, as Python
 * rng.choice(["a", "b", "c"]);
 * ```
 * @module
 */

const N = 624;
const M = 397;
const MATRIX_A = 0x9908b0df;
const UPPER_MASK = 0x80000000;
const LOWER_MASK = 0x7fffffff;

/** A pseudo-random generator with CPython's `random.Random(seed)` sequences (integer seeds). */
export class PyRandom {
  #mt = new Uint32Array(N);
  #mti = N + 1;

  /** Seeds as `random.Random(seed)` does for an int: the absolute value's 32-bit words, low word first. */
  constructor(seed: number | bigint) {
    this.seed(seed);
  }

  /** Re-seed, as `Random.seed(int)`. */
  seed(seed: number | bigint): void {
    if (typeof seed === "number" && !Number.isSafeInteger(seed)) {
      throw new Error(`Cannot seed PyRandom: seed must be a safe integer or a bigint, got ${seed}`);
    }
    let n = BigInt(seed);
    if (n < 0n) n = -n;
    const key: number[] = [];
    while (n > 0n) {
      key.push(Number(n & 0xffffffffn));
      n >>= 32n;
    }
    if (key.length === 0) key.push(0);
    this.#initByArray(key);
  }

  #initGenrand(s: number): void {
    const mt = this.#mt;
    mt[0] = s >>> 0;
    for (let i = 1; i < N; i++) {
      const prev = mt[i - 1]!;
      mt[i] = (Math.imul(1812433253, prev ^ (prev >>> 30)) + i) >>> 0;
    }
    this.#mti = N;
  }

  #initByArray(key: readonly number[]): void {
    const mt = this.#mt;
    this.#initGenrand(19650218);
    let i = 1;
    let j = 0;
    for (let k = Math.max(N, key.length); k > 0; k--) {
      const prev = mt[i - 1]!;
      mt[i] = ((mt[i]! ^ Math.imul(prev ^ (prev >>> 30), 1664525)) + key[j]! + j) >>> 0;
      i++;
      j++;
      if (i >= N) {
        mt[0] = mt[N - 1]!;
        i = 1;
      }
      if (j >= key.length) j = 0;
    }
    for (let k = N - 1; k > 0; k--) {
      const prev = mt[i - 1]!;
      mt[i] = ((mt[i]! ^ Math.imul(prev ^ (prev >>> 30), 1566083941)) - i) >>> 0;
      i++;
      if (i >= N) {
        mt[0] = mt[N - 1]!;
        i = 1;
      }
    }
    mt[0] = 0x80000000; // MSB is 1, assuring a non-zero initial array
  }

  /** The next raw 32-bit output of MT19937 (CPython's `genrand_uint32`). */
  nextUint32(): number {
    const mt = this.#mt;
    if (this.#mti >= N) {
      let kk = 0;
      for (; kk < N - M; kk++) {
        const y = (mt[kk]! & UPPER_MASK) | (mt[kk + 1]! & LOWER_MASK);
        mt[kk] = mt[kk + M]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
      }
      for (; kk < N - 1; kk++) {
        const y = (mt[kk]! & UPPER_MASK) | (mt[kk + 1]! & LOWER_MASK);
        mt[kk] = mt[kk + (M - N)]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
      }
      const y = (mt[N - 1]! & UPPER_MASK) | (mt[0]! & LOWER_MASK);
      mt[N - 1] = mt[M - 1]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
      this.#mti = 0;
    }
    let y = mt[this.#mti++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** A float in [0, 1) with 53 random bits, as `random.random()`. */
  random(): number {
    const a = this.nextUint32() >>> 5;
    const b = this.nextUint32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }

  /** A float in [a, b] (or [b, a]), as `random.uniform(a, b)`: `a + (b - a) * random()`. */
  uniform(a: number, b: number): number {
    return a + (b - a) * this.random();
  }

  /** A non-negative integer of `k` random bits (0 ≤ k ≤ 53), as `random.getrandbits(k)`. */
  getrandbits(k: number): number {
    if (!Number.isInteger(k) || k < 0) {
      throw new Error(`Cannot draw random bits: k must be a non-negative integer, got ${k}`);
    }
    if (k > 53) throw new Error(`Cannot draw random bits as a number: k = ${k} exceeds 53, use getrandbitsBig`);
    if (k === 0) return 0;
    if (k <= 32) return this.nextUint32() >>> (32 - k);
    // CPython fills 32-bit words from the least significant up; the last word keeps its top bits.
    const low = this.nextUint32();
    const high = this.nextUint32() >>> (64 - k);
    return high * 4294967296 + low;
  }

  /** A non-negative integer of `k` random bits (any k ≥ 0), as `random.getrandbits(k)`. */
  getrandbitsBig(k: number): bigint {
    if (!Number.isInteger(k) || k < 0) {
      throw new Error(`Cannot draw random bits: k must be a non-negative integer, got ${k}`);
    }
    let result = 0n;
    let shift = 0n;
    for (let left = k; left > 0; left -= 32) {
      let r = this.nextUint32();
      if (left < 32) r >>>= 32 - left;
      result |= BigInt(r) << shift;
      shift += 32n;
    }
    return result;
  }

  /** A uniform integer in [0, n) for 1 ≤ n < 2^53, as CPython's `_randbelow_with_getrandbits`. */
  randbelow(n: number): number {
    if (!Number.isSafeInteger(n)) throw new Error(`Cannot draw below ${n}: not a safe integer`);
    if (n <= 0) throw new Error(`Cannot draw below ${n}: n must be positive`);
    const k = bitLength(n);
    let r = this.getrandbits(k);
    while (r >= n) r = this.getrandbits(k);
    return r;
  }

  /**
   * A random element of `range(start, stop, step)`, as `random.randrange`; with one argument,
   * of `range(0, start)`.
   */
  randrange(start: number, stop?: number, step = 1): number {
    checkInt(start, "start");
    if (stop === undefined) {
      if (step !== 1) throw new Error("Cannot draw from randrange: missing a non-None stop argument");
      if (start > 0) return this.randbelow(start);
      throw new Error(`Cannot draw from randrange: empty range (0, ${start})`);
    }
    checkInt(stop, "stop");
    checkInt(step, "step");
    const width = stop - start;
    if (step === 1) {
      if (width > 0) return start + this.randbelow(width);
      throw new Error(`Cannot draw from randrange: empty range (${start}, ${stop}, ${step})`);
    }
    let n: number;
    if (step > 0) n = Math.floor((width + step - 1) / step);
    else if (step < 0) n = Math.floor((width + step + 1) / step);
    else throw new Error("Cannot draw from randrange: zero step");
    if (n <= 0) throw new Error(`Cannot draw from randrange: empty range (${start}, ${stop}, ${step})`);
    return start + step * this.randbelow(n);
  }

  /** A random integer in [a, b], both included, as `random.randint(a, b)`. */
  randint(a: number, b: number): number {
    return this.randrange(a, b + 1);
  }

  /** A random element, as `random.choice(seq)`. */
  choice<T>(seq: ArrayLike<T>): T {
    if (seq.length === 0) throw new Error("Cannot choose from an empty sequence");
    return seq[this.randbelow(seq.length)]!;
  }

  /** Shuffle in place, as `random.shuffle(x)` (Fisher–Yates from the end). Returns the same array. */
  shuffle<T>(x: T[]): T[] {
    for (let i = x.length - 1; i > 0; i--) {
      const j = this.randbelow(i + 1);
      const t = x[i]!;
      x[i] = x[j]!;
      x[j] = t;
    }
    return x;
  }

  /** `k` distinct elements chosen without replacement, as `random.sample(population, k)` (CPython ≥ 3.11). */
  sample<T>(population: ArrayLike<T>, k: number): T[] {
    const n = population.length;
    checkInt(k, "k");
    if (k < 0 || k > n) throw new Error(`Cannot sample ${k} of ${n}: sample larger than population or is negative`);
    const result: T[] = new Array(k);
    let setsize = 21; // size of a small set minus size of an empty list
    if (k > 5) setsize += 4 ** Math.ceil(Math.log(k * 3) / Math.log(4)); // table size for big sets
    if (n <= setsize) {
      // an n-length list is smaller than a k-length set
      const pool = Array.from(population);
      for (let i = 0; i < k; i++) {
        const j = this.randbelow(n - i);
        result[i] = pool[j]!;
        pool[j] = pool[n - i - 1]!; // move non-selected item into vacancy
      }
    } else {
      const selected = new Set<number>();
      for (let i = 0; i < k; i++) {
        let j = this.randbelow(n);
        while (selected.has(j)) j = this.randbelow(n);
        selected.add(j);
        result[i] = population[j]!;
      }
    }
    return result;
  }
}

/** Python's `int.bit_length()` for a non-negative safe integer. */
function bitLength(n: number): number {
  if (n < 2 ** 32) return 32 - Math.clz32(n);
  return 32 + bitLength(Math.floor(n / 2 ** 32));
}

function checkInt(v: number, what: string): void {
  if (!Number.isSafeInteger(v)) throw new Error(`Cannot draw from randrange: ${what} must be an integer, got ${v}`);
}

/**
 * `node:crypto` in the browser bundle: `createHash("sha256")` and `createHash("sha1")` (the hub's git blob
 * ids), synchronous as Node's are (WebCrypto's digest is asynchronous, and the checkpoint code hashes
 * inline). FIPS 180-4, in plain TypeScript: both share the Merkle–Damgård framing (64-byte blocks, the
 * 0x80 pad and the big-endian bit length) and differ in their compression function.
 * @module
 */

const K = new Uint32Array([
  0x428a2f98,
  0x71374491,
  0xb5c0fbcf,
  0xe9b5dba5,
  0x3956c25b,
  0x59f111f1,
  0x923f82a4,
  0xab1c5ed5,
  0xd807aa98,
  0x12835b01,
  0x243185be,
  0x550c7dc3,
  0x72be5d74,
  0x80deb1fe,
  0x9bdc06a7,
  0xc19bf174,
  0xe49b69c1,
  0xefbe4786,
  0x0fc19dc6,
  0x240ca1cc,
  0x2de92c6f,
  0x4a7484aa,
  0x5cb0a9dc,
  0x76f988da,
  0x983e5152,
  0xa831c66d,
  0xb00327c8,
  0xbf597fc7,
  0xc6e00bf3,
  0xd5a79147,
  0x06ca6351,
  0x14292967,
  0x27b70a85,
  0x2e1b2138,
  0x4d2c6dfc,
  0x53380d13,
  0x650a7354,
  0x766a0abb,
  0x81c2c92e,
  0x92722c85,
  0xa2bfe8a1,
  0xa81a664b,
  0xc24b8b70,
  0xc76c51a3,
  0xd192e819,
  0xd6990624,
  0xf40e3585,
  0x106aa070,
  0x19a4c116,
  0x1e376c08,
  0x2748774c,
  0x34b0bcb5,
  0x391c0cb3,
  0x4ed8aa4a,
  0x5b9cca4f,
  0x682e6ff3,
  0x748f82ee,
  0x78a5636f,
  0x84c87814,
  0x8cc70208,
  0x90befffa,
  0xa4506ceb,
  0xbef9a3f7,
  0xc67178f2,
]);

/** The framing SHA-1 and SHA-256 share: 64-byte blocks, padded with 0x80, zeros and the bit length. */
abstract class BlockHash {
  /** The chaining state (its words, big-endian, are the digest). */
  protected abstract readonly h: Uint32Array;
  /** Mix the 64-byte block of `b` at `at` into the state. */
  protected abstract compress(b: Uint8Array, at: number): void;
  #block = new Uint8Array(64);
  #fill = 0;
  #length = 0;

  /** Add bytes (a string is UTF-8). */
  update(data: Uint8Array | string): this {
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    this.#length += bytes.length;
    let i = 0;
    if (this.#fill > 0) {
      const n = Math.min(64 - this.#fill, bytes.length);
      this.#block.set(bytes.subarray(0, n), this.#fill);
      this.#fill += n;
      i = n;
      if (this.#fill < 64) return this;
      this.compress(this.#block, 0);
      this.#fill = 0;
    }
    for (; i + 64 <= bytes.length; i += 64) this.compress(bytes, i);
    this.#block.set(bytes.subarray(i), 0);
    this.#fill = bytes.length - i;
    return this;
  }

  /** The digest as hex (or the bytes, without an encoding). */
  digest(): Uint8Array;
  digest(encoding: "hex"): string;
  digest(encoding?: "hex"): Uint8Array | string {
    const bits = this.#length * 8;
    const pad = new Uint8Array(((this.#fill < 56 ? 56 : 120) - this.#fill) + 8);
    pad[0] = 0x80;
    const view = new DataView(pad.buffer);
    view.setUint32(pad.length - 8, Math.floor(bits / 2 ** 32));
    view.setUint32(pad.length - 4, bits >>> 0);
    this.update(pad);
    const out = new Uint8Array(4 * this.h.length);
    const ov = new DataView(out.buffer);
    for (let i = 0; i < this.h.length; i++) ov.setUint32(4 * i, this.h[i]!);
    return encoding === "hex" ? [...out].map((b) => b.toString(16).padStart(2, "0")).join("") : out;
  }
}

/** An incremental SHA-256. */
export class Sha256 extends BlockHash {
  protected readonly h = new Uint32Array([
    0x6a09e667,
    0xbb67ae85,
    0x3c6ef372,
    0xa54ff53a,
    0x510e527f,
    0x9b05688c,
    0x1f83d9ab,
    0x5be0cd19,
  ]);
  #w = new Uint32Array(64);

  protected compress(b: Uint8Array, at: number): void {
    const w = this.#w, h = this.h;
    for (let i = 0; i < 16; i++) {
      const j = at + 4 * i;
      w[i] = (b[j]! << 24) | (b[j + 1]! << 16) | (b[j + 2]! << 8) | b[j + 3]!;
    }
    for (let i = 16; i < 64; i++) {
      const x = w[i - 15]!, y = w[i - 2]!;
      const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
      const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
      w[i] = (w[i - 16]! + s0 + w[i - 7]! + s1) | 0;
    }
    let a = h[0]!, bb = h[1]!, c = h[2]!, d = h[3]!, e = h[4]!, f = h[5]!, g = h[6]!, hh = h[7]!;
    for (let i = 0; i < 64; i++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const t1 = (hh + S1 + ((e & f) ^ (~e & g)) + K[i]! + w[i]!) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const t2 = (S0 + ((a & bb) ^ (a & c) ^ (bb & c))) | 0;
      hh = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = bb;
      bb = a;
      a = (t1 + t2) | 0;
    }
    h[0] = h[0]! + a;
    h[1] = h[1]! + bb;
    h[2] = h[2]! + c;
    h[3] = h[3]! + d;
    h[4] = h[4]! + e;
    h[5] = h[5]! + f;
    h[6] = h[6]! + g;
    h[7] = h[7]! + hh;
  }
}

/** An incremental SHA-1 (only for git's blob ids, which the hub uses as ETags; not for security). */
export class Sha1 extends BlockHash {
  protected readonly h = new Uint32Array([0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0]);
  #w = new Uint32Array(80);

  protected compress(b: Uint8Array, at: number): void {
    const w = this.#w, h = this.h;
    for (let i = 0; i < 16; i++) {
      const j = at + 4 * i;
      w[i] = (b[j]! << 24) | (b[j + 1]! << 16) | (b[j + 2]! << 8) | b[j + 3]!;
    }
    for (let i = 16; i < 80; i++) {
      const x = w[i - 3]! ^ w[i - 8]! ^ w[i - 14]! ^ w[i - 16]!;
      w[i] = (x << 1) | (x >>> 31);
    }
    let a = h[0]!, bb = h[1]!, c = h[2]!, d = h[3]!, e = h[4]!;
    for (let i = 0; i < 80; i++) {
      const [f, k] = i < 20
        ? [(bb & c) | (~bb & d), 0x5a827999]
        : i < 40
        ? [bb ^ c ^ d, 0x6ed9eba1]
        : i < 60
        ? [(bb & c) | (bb & d) | (c & d), 0x8f1bbcdc]
        : [bb ^ c ^ d, 0xca62c1d6];
      const t = (((a << 5) | (a >>> 27)) + f + e + k + w[i]!) | 0;
      e = d;
      d = c;
      c = (bb << 30) | (bb >>> 2);
      bb = a;
      a = t;
    }
    h[0] = h[0]! + a;
    h[1] = h[1]! + bb;
    h[2] = h[2]! + c;
    h[3] = h[3]! + d;
    h[4] = h[4]! + e;
  }
}

/** `createHash("sha256")` or `createHash("sha1")`; other algorithms are refused by name. */
export function createHash(algorithm: string): Sha256 | Sha1 {
  if (algorithm === "sha256") return new Sha256();
  if (algorithm === "sha1") return new Sha1();
  throw new Error(`createHash: "${algorithm}" is not available in the browser (sha256 and sha1 are)`);
}

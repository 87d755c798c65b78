/**
 * A small stand-in for `bun:test` under Deno, so that one test file runs on both runtimes.
 * deno.json maps the specifier `bun:test` here; Bun uses its own runner. It covers the subset of the API
 * this project's tests use: `test`, `describe`, `expect` and `test.skipIf`.
 * @module
 */

const prefix: string[] = [];

type TestFn = () => unknown;

/** Registers a test (with the names of enclosing `describe` blocks as prefix). */
export function test(name: string, fn: TestFn, _timeout?: number): void {
  Deno.test({
    name: [...prefix, name].join(" > "),
    fn: fn as () => Promise<void>,
    sanitizeResources: false,
    sanitizeOps: false,
  });
}
test.skip = (name: string, _fn: TestFn): void => {
  Deno.test({ name: [...prefix, name].join(" > "), ignore: true, fn: () => {} });
};
test.skipIf = (cond: boolean) => (name: string, fn: TestFn, timeout?: number): void =>
  cond ? test.skip(name, fn) : test(name, fn, timeout);
test.if = (cond: boolean) => test.skipIf(!cond);
export const it = test;

/** Groups tests under a name. */
export function describe(name: string, fn: () => void): void {
  prefix.push(name);
  try {
    const r: unknown = fn();
    if (r instanceof Promise) {
      throw new Error(
        `describe("${name}") has an async callback: tests it registers after an await are lost under Deno`,
      );
    }
  } finally {
    prefix.pop();
  }
}

function show(v: unknown): string {
  try {
    return typeof v === "string" ? JSON.stringify(v) : Deno.inspect(v, { depth: 4 });
  } catch {
    return String(v);
  }
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (ArrayBuffer.isView(a) && ArrayBuffer.isView(b)) {
    const x = a as unknown as ArrayLike<unknown>, y = b as unknown as ArrayLike<unknown>;
    if (x.length !== y.length || a.constructor !== b.constructor) return false;
    for (let i = 0; i < x.length; i++) if (!Object.is(x[i], y[i])) return false;
    return true;
  }
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a as object).filter((k) => (a as Record<string, unknown>)[k] !== undefined);
  const kb = Object.keys(b as object).filter((k) => (b as Record<string, unknown>)[k] !== undefined);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

function matchesError(e: unknown, expected?: string | RegExp | (new (...a: never[]) => Error)): boolean {
  if (expected === undefined) return true;
  const msg = e instanceof Error ? e.message : String(e);
  if (typeof expected === "string") return msg.includes(expected);
  if (expected instanceof RegExp) return expected.test(msg);
  return e instanceof expected;
}

class Matchers {
  constructor(private actual: unknown, private negate = false) {}
  get not(): Matchers {
    return new Matchers(this.actual, !this.negate);
  }
  get rejects() {
    const p = this.actual as Promise<unknown>;
    const neg = this.negate;
    return {
      async toThrow(expected?: string | RegExp | (new (...a: never[]) => Error)): Promise<void> {
        let threw = false, err: unknown;
        try {
          await p;
        } catch (e) {
          threw = true;
          err = e;
        }
        const ok = threw && matchesError(err, expected);
        if (ok === neg) {
          throw new Error(
            `Expected promise ${neg ? "not " : ""}to reject with ${show(expected)}, got ${
              threw ? show((err as Error)?.message ?? err) : "resolution"
            }`,
          );
        }
      },
    };
  }
  get resolves() {
    const p = this.actual as Promise<unknown>;
    return {
      toBe: async (v: unknown) => new Matchers(await p, this.negate).toBe(v),
      toEqual: async (v: unknown) => new Matchers(await p, this.negate).toEqual(v),
    };
  }
  #check(ok: boolean, what: string): void {
    if (ok === this.negate) {
      throw new Error(`Expected ${show(this.actual)} ${this.negate ? "not " : ""}${what}`);
    }
  }
  toBe(v: unknown): void {
    this.#check(Object.is(this.actual, v), `to be ${show(v)}`);
  }
  toEqual(v: unknown): void {
    this.#check(deepEqual(this.actual, v), `to equal ${show(v)}`);
  }
  toStrictEqual(v: unknown): void {
    this.toEqual(v);
  }
  toBeTruthy(): void {
    this.#check(!!this.actual, "to be truthy");
  }
  toBeFalsy(): void {
    this.#check(!this.actual, "to be falsy");
  }
  toBeDefined(): void {
    this.#check(this.actual !== undefined, "to be defined");
  }
  toBeUndefined(): void {
    this.#check(this.actual === undefined, "to be undefined");
  }
  toBeNull(): void {
    this.#check(this.actual === null, "to be null");
  }
  toBeNaN(): void {
    this.#check(Number.isNaN(this.actual), "to be NaN");
  }
  toBeGreaterThan(v: number): void {
    this.#check((this.actual as number) > v, `to be > ${v}`);
  }
  toBeGreaterThanOrEqual(v: number): void {
    this.#check((this.actual as number) >= v, `to be >= ${v}`);
  }
  toBeLessThan(v: number): void {
    this.#check((this.actual as number) < v, `to be < ${v}`);
  }
  toBeLessThanOrEqual(v: number): void {
    this.#check((this.actual as number) <= v, `to be <= ${v}`);
  }
  toBeCloseTo(v: number, digits = 2): void {
    this.#check(
      Math.abs((this.actual as number) - v) < 10 ** -digits / 2,
      `to be close to ${v} (${digits} digits)`,
    );
  }
  toContain(v: unknown): void {
    const a = this.actual as string | unknown[];
    this.#check(a.includes(v as never), `to contain ${show(v)}`);
  }
  toHaveLength(n: number): void {
    this.#check((this.actual as { length: number }).length === n, `to have length ${n}`);
  }
  toMatch(re: RegExp | string): void {
    const s = String(this.actual);
    this.#check(typeof re === "string" ? s.includes(re) : re.test(s), `to match ${re}`);
  }
  toBeInstanceOf(c: new (...a: never[]) => unknown): void {
    this.#check(this.actual instanceof c, `to be an instance of ${c.name}`);
  }
  toThrow(expected?: string | RegExp | (new (...a: never[]) => Error)): void {
    let threw = false, err: unknown;
    try {
      (this.actual as () => unknown)();
    } catch (e) {
      threw = true;
      err = e;
    }
    const ok = threw && matchesError(err, expected);
    if (ok === this.negate) {
      throw new Error(
        `Expected function ${this.negate ? "not " : ""}to throw ${show(expected)}, got ${
          threw ? show((err as Error)?.message ?? err) : "no error"
        }`,
      );
    }
  }
}

/** Jest-style assertions (the subset used here). */
export function expect(actual: unknown): Matchers {
  return new Matchers(actual);
}

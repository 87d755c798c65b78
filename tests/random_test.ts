// PyRandom against CPython 3.11's random.Random. The expected values were printed by
// `python3 tests/gen_notebook_data.py random` and pasted here. Every comparison is exact (toEqual/toBe):
// the generator is integer arithmetic and random() is one exact division, so there is no tolerance.
import { describe, expect, test } from "bun:test";
import { PyRandom } from "../src/data/random.ts";

const LABELS = ["延迟发货", "退款申请", "地址修改", "物流异常", "售后咨询", "发票问题"];

describe("PyRandom", () => {
  test("randint(1000, 9999), seed 42", () => {
    const r = new PyRandom(42);
    expect(Array.from({ length: 20 }, () => r.randint(1000, 9999))).toEqual([
      2824,
      1409,
      5506,
      5012,
      4657,
      3286,
      2679,
      9935,
      2424,
      7912,
      1520,
      1488,
      2535,
      4582,
      4811,
      9279,
      1434,
      4257,
      9928,
      7873,
    ]);
  });

  test("random(), seed 42", () => {
    const r = new PyRandom(42);
    expect(Array.from({ length: 10 }, () => r.random())).toEqual([
      0.6394267984578837,
      0.025010755222666936,
      0.27502931836911926,
      0.22321073814882275,
      0.7364712141640124,
      0.6766994874229113,
      0.8921795677048454,
      0.08693883262941615,
      0.4219218196852704,
      0.029797219438070344,
    ]);
  });

  test("random() after 700 draws crosses the state regeneration", () => {
    const r = new PyRandom(42);
    for (let i = 0; i < 700; i++) r.random();
    expect([r.random(), r.random(), r.random()]).toEqual([0.6476347234024807, 0.9084114452126061, 0.8266311596500596]);
  });

  test("getrandbits(32), seed 0", () => {
    const r = new PyRandom(0);
    expect(Array.from({ length: 10 }, () => r.getrandbits(32))).toEqual([
      3626764237,
      1654615998,
      3255389356,
      3823568514,
      1806341205,
      173879092,
      1112038970,
      4146640122,
      2195908194,
      2087043557,
    ]);
  });

  test("getrandbits of widths 1..53 and as bigint", () => {
    const r = new PyRandom(7);
    expect([1, 5, 31, 32, 33, 40, 53].map((k) => r.getrandbits(k))).toEqual([
      0,
      30,
      323946139,
      1695753998,
      2795742288,
      902254243635,
      847850320662571,
    ]);
    const b = new PyRandom(7);
    expect([64, 100, 200].map((k) => b.getrandbitsBig(k).toString())).toEqual([
      "17485029721327973432",
      "51572342490066390446489079095",
      "91537643938837530561198714667852239811829772716845765963571",
    ]);
    expect(new PyRandom(7).getrandbits(0)).toBe(0);
    expect(() => new PyRandom(7).getrandbits(54)).toThrow("getrandbitsBig");
  });

  // big, negative and zero seeds: init_by_array over abs(seed)'s 32-bit words, low word first
  const seeds: [number | bigint, number[]][] = [
    [2 ** 40 + 5, [0.5043802970418443, 0.2686044399723282, 0.9257865475671585, 2280452553, 3257480346, 3513130008]],
    [2n ** 64n + 3n, [0.9129684455472157, 0.9226991467077957, 0.8296235909088164, 91238088, 4251231954, 819481303]],
    [-12345, [0.41661987254534116, 0.010169169457068361, 0.8252065092537432, 1282648386, 3672791226, 1582316135]],
    [0, [0.8444218515250481, 0.7579544029403025, 0.420571580830845, 1112038970, 4146640122, 2195908194]],
    [2 ** 32, [0.11299430095636409, 0.41782886486292836, 0.0166763664992291, 2627323657, 3762791315, 3460227584]],
    [2 ** 53 - 1, [0.09425040007102303, 0.22287455761867403, 0.19135148760372034, 633289196, 499576870, 416156196]],
  ];
  for (const [seed, want] of seeds) {
    test(`seed ${seed}`, () => {
      const r = new PyRandom(seed);
      expect([r.random(), r.random(), r.random(), r.getrandbits(32), r.getrandbits(32), r.getrandbits(32)]).toEqual(
        want,
      );
    });
  }

  test("a number seed and the same bigint seed agree; re-seeding restarts", () => {
    const a = new PyRandom(2 ** 40 + 5);
    const b = new PyRandom(2n ** 40n + 5n);
    expect(a.random()).toBe(b.random());
    a.seed(42);
    expect(a.randint(1000, 9999)).toBe(2824);
    expect(() => new PyRandom(1.5)).toThrow("safe integer");
  });

  test("choice, seed 123", () => {
    const r = new PyRandom(123);
    expect(Array.from({ length: 20 }, () => r.choice(LABELS))).toEqual([
      "延迟发货",
      "地址修改",
      "延迟发货",
      "物流异常",
      "地址修改",
      "延迟发货",
      "延迟发货",
      "物流异常",
      "售后咨询",
      "售后咨询",
      "地址修改",
      "地址修改",
      "延迟发货",
      "退款申请",
      "退款申请",
      "地址修改",
      "售后咨询",
      "地址修改",
      "发票问题",
      "退款申请",
    ]);
    expect(() => r.choice([])).toThrow("empty sequence");
  });

  test("randrange forms, seed 5", () => {
    const r = new PyRandom(5);
    expect([
      r.randrange(10),
      r.randrange(3, 100),
      r.randrange(0, 100, 7),
      r.randrange(50, 0, -3),
      r.randrange(2 ** 40),
      r.randrange(-5, 5),
      r.randint(1, 28),
      r.randrange(2 ** 53 - 1),
    ]).toEqual([9, 35, 77, 17, 549512532852, -5, 6, 3348816551678198]);
    expect(() => r.randrange(0)).toThrow("empty range");
    expect(() => r.randrange(5, 5)).toThrow("empty range");
    expect(() => r.randrange(0, 10, 0)).toThrow("zero step");
    expect(() => r.randint(3, 2)).toThrow("empty range");
  });

  test("shuffle, seeds 9 and 1042", () => {
    const r = new PyRandom(9);
    expect(r.shuffle(Array.from({ length: 20 }, (_, i) => i))).toEqual([
      2,
      19,
      9,
      3,
      12,
      6,
      16,
      18,
      1,
      7,
      17,
      15,
      0,
      10,
      13,
      5,
      4,
      8,
      11,
      14,
    ]);
    // the trainer's epoch shuffle size: head and a position-weighted checksum of the whole permutation
    const xs = new PyRandom(1042).shuffle(Array.from({ length: 8000 }, (_, i) => i));
    expect(xs.slice(0, 20)).toEqual([
      7963,
      671,
      1441,
      4732,
      298,
      2421,
      76,
      1587,
      1755,
      7843,
      1393,
      4627,
      3590,
      7601,
      4737,
      6274,
      7950,
      7329,
      2908,
      4500,
    ]);
    expect(xs.reduce((s, v, i) => s + i * v, 0)).toBe(128121638136);
  });

  test("sample, both of CPython's branches, seed 11", () => {
    const r = new PyRandom(11);
    const range = (n: number) => Array.from({ length: n }, (_, i) => i);
    expect(r.sample(range(10), 4)).toEqual([7, 8, 9, 3]);
    expect(r.sample(range(1000), 10)).toEqual([520, 875, 601, 194, 189, 823, 524, 487, 644, 628]);
    expect(r.sample(range(30), 30)).toEqual([
      25,
      5,
      3,
      14,
      9,
      4,
      2,
      17,
      20,
      1,
      19,
      12,
      26,
      28,
      0,
      13,
      8,
      21,
      15,
      11,
      27,
      29,
      10,
      6,
      22,
      23,
      16,
      24,
      7,
      18,
    ]);
    expect(() => r.sample(range(3), 4)).toThrow("larger than population");
  });

  test("uniform, seed 3", () => {
    const r = new PyRandom(3);
    expect([r.uniform(-1.5, 2.5), r.uniform(-1.5, 2.5), r.uniform(-1.5, 2.5)]).toEqual([
      -0.5481414916324345,
      0.6769169011838074,
      -0.020179333807682998,
    ]);
  });
});

/**
 * `node:util` in the browser bundle: `parseArgs` as Node defines it, for the options the front doors
 * declare (string and boolean flags, `short`, `default`, `multiple`, `--name=value`, `--`, strict mode and
 * positionals), with Node's error codes (`ERR_PARSE_ARGS_*`), which src/cli/args.ts turns into its messages.
 * @module
 */

/** One option's declaration. */
export interface ParseArgsOptionConfig {
  type: "string" | "boolean";
  short?: string;
  multiple?: boolean;
  default?: string | boolean | string[] | boolean[];
}

/** What `parseArgs` takes. */
export interface ParseArgsConfig {
  args?: string[];
  options?: Record<string, ParseArgsOptionConfig>;
  strict?: boolean;
  allowPositionals?: boolean;
}

type Value = string | boolean | (string | boolean)[];

function parseError(code: string, message: string): Error {
  return Object.assign(new TypeError(message), { code });
}

/** Parse `config.args` against `config.options`. */
export function parseArgs(
  config: ParseArgsConfig,
): { values: Record<string, Value | undefined>; positionals: string[] } {
  const args = config.args ?? [];
  const options = config.options ?? {};
  const strict = config.strict ?? true;
  const allowPositionals = config.allowPositionals ?? !strict;
  const values: Record<string, Value | undefined> = {};
  const positionals: string[] = [];
  const byShort = new Map(Object.entries(options).filter(([, o]) => o.short).map(([k, o]) => [o.short!, k]));

  const store = (name: string, value: string | boolean) => {
    const o = options[name];
    if (o?.multiple) values[name] = [...((values[name] as (string | boolean)[] | undefined) ?? []), value];
    else values[name] = value;
  };
  const take = (flag: string, name: string, inline: string | undefined, next: () => string | undefined) => {
    const o = options[name];
    if (!o) {
      if (strict) {
        throw parseError(
          "ERR_PARSE_ARGS_UNKNOWN_OPTION",
          `Unknown option '${flag}'. To specify a positional argument starting with a '-', place it at the end of the command after '--', as in '-- "${flag}"`,
        );
      }
      store(name, inline ?? true);
      return;
    }
    if (o.type === "boolean") {
      if (inline !== undefined && strict) {
        throw parseError("ERR_PARSE_ARGS_INVALID_OPTION_VALUE", `Option '${flag}' does not take an argument`);
      }
      store(name, true);
      return;
    }
    const value = inline ?? next();
    if (value === undefined || (inline === undefined && strict && value.startsWith("-") && value !== "-")) {
      throw parseError("ERR_PARSE_ARGS_INVALID_OPTION_VALUE", `Option '${flag} <value>' argument missing`);
    }
    store(name, value);
  };

  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const next = () => (i + 1 < args.length ? args[++i] : undefined);
    if (arg === "--") {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      const name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      take(eq < 0 ? arg : arg.slice(0, eq), name, eq < 0 ? undefined : arg.slice(eq + 1), next);
    } else if (arg.startsWith("-") && arg.length > 1) {
      for (let j = 1; j < arg.length; j++) {
        const ch = arg[j]!;
        const name = byShort.get(ch) ?? ch;
        if (options[name]?.type === "string") {
          take(`-${ch}`, name, j + 1 < arg.length ? arg.slice(j + 1) : undefined, next);
          break;
        }
        take(`-${ch}`, name, undefined, next);
      }
    } else {
      if (!allowPositionals) {
        throw parseError(
          "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL",
          `Unexpected argument '${arg}'. This command does not take positional arguments`,
        );
      }
      positionals.push(arg);
    }
  }
  for (const [name, o] of Object.entries(options)) {
    if (values[name] === undefined && o.default !== undefined) values[name] = o.default as Value;
  }
  return { values, positionals };
}

/** Node's `util.inspect`, as far as messages need it. */
export function inspect(value: unknown): string {
  return typeof value === "string" ? `'${value}'` : JSON.stringify(value) ?? String(value);
}

/** Node's `util.format`, for `%s`, `%d`, `%j` and `%o`. */
export function format(fmt: string, ...args: unknown[]): string {
  let i = 0;
  return fmt.replace(/%[sdjo%]/g, (m) => (m === "%%" ? "%" : i < args.length ? String(args[i++]) : m));
}

const util = { parseArgs, inspect, format };
export default util;

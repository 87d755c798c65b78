/**
 * What the browser bundle has instead of the runtime-only packages (`webgpu`, Dawn for Bun and Node;
 * `bun:ffi`): the library imports them dynamically inside a `try`, so loading this module fails as a
 * missing package would, and the browser's own `navigator.gpu` is used.
 * @module
 */

throw new Error("not available in the browser (the page uses the browser's navigator.gpu)");
export {};

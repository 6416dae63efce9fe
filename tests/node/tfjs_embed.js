// Runs a tfjs graph model unchanged on tfjs's WebAssembly backend: the reference the ONNX conversion is
// checked against (tests/test_faceres.py, tests/test_blazeface.py). No TensorFlow, no native code: the
// backend's .wasm comes in its npm package. It is tfjs's own kernels (XNNPACK), about 17 times cheaper
// than the pure-JS CPU backend here; a backend that cannot start is an error, never a silent fallback.
//   node tfjs_embed.js MODEL_JSON INPUT_F32 N H W C OUTPUT_NAME RESULT_F32
// INPUT_F32: N*H*W*C little-endian float32 (NHWC); RESULT_F32 receives the output as float32.
// Finds @tensorflow/* through NODE_PATH.
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs-core');
require('@tensorflow/tfjs-backend-wasm');
const converter = require('@tensorflow/tfjs-converter');

async function main() {
  const [modelJson, inputFile, n, h, w, c, outputName, resultFile] = process.argv.slice(2);
  if (!(await tf.setBackend('wasm'))) throw new Error('tfjs: the wasm backend did not start');
  const manifest = JSON.parse(fs.readFileSync(modelJson, 'utf8'));
  const specs = [];
  const buffers = [];
  for (const group of manifest.weightsManifest) {
    specs.push(...group.weights);
    for (const p of group.paths) buffers.push(fs.readFileSync(path.join(path.dirname(modelJson), p)));
  }
  const all = Buffer.concat(buffers);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  const model = await converter.loadGraphModel(tf.io.fromMemory({
    modelTopology: manifest.modelTopology, weightSpecs: specs, weightData,
  }));
  const raw = fs.readFileSync(inputFile);
  const values = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
  const shape = [n, h, w, c].map(Number);
  const results = [];
  for (let i = 0; i < shape[0]; i++) {  // one face at a time, as the gate does
    const size = shape[1] * shape[2] * shape[3];
    const x = tf.tensor(values.slice(i * size, (i + 1) * size), [1, shape[1], shape[2], shape[3]]);
    const y = model.execute(x, outputName);
    results.push(...(await y.data()));
    x.dispose(); y.dispose();
  }
  fs.writeFileSync(resultFile, Buffer.from(new Float32Array(results).buffer));
}

main().catch((err) => { console.error(err); process.exit(1); });

// Validates a JSON body against a schema of the official 3GPP OpenAPI files.
//   node validate.mjs <openapi.yaml> <SchemaName> <body.json> [<SchemaName> <body.json> ...]
// Exits 0 when every body is valid, 1 with the errors otherwise, 2 on usage errors.
// Every YAML file beside <openapi.yaml> is registered with Ajv under its file name, so the
// 3GPP cross-file $refs ('TS29571_CommonData.yaml#/components/schemas/Supi') resolve; only
// the schemas actually reached are compiled. Schemas in files we do not hold (TS 29.510's
// AccessTokenErr inside ProblemDetails, ...) stand in as "anything": the project never emits
// those members, and everything else is checked. The schemas are OpenAPI 3.0 dialect, which
// Ajv reads with strict mode off (nullable included).
import Ajv from 'ajv';
import addFormats from 'ajv-formats';
import yaml from 'js-yaml';
import { readFileSync, readdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

const [, , specFile, ...pairs] = process.argv;
if (!specFile || pairs.length === 0 || pairs.length % 2 !== 0) {
  console.error('usage: node validate.mjs <openapi.yaml> <SchemaName> <body.json> [...]');
  process.exit(2);
}

const ajv = new Ajv({ strict: false, allErrors: true, validateSchema: false });
addFormats(ajv);
// OpenAPI 3.0 numeric and binary formats: the type check is what matters here.
for (const f of ['int32', 'int64', 'float', 'double', 'byte', 'binary', 'password']) ajv.addFormat(f, true);
const dir = dirname(specFile);
const held = readdirSync(dir).filter((n) => n.endsWith('.yaml'));
const missing = new Map(); // file name -> Set of schema names referenced in it
for (const f of held) {
  const text = readFileSync(join(dir, f), 'utf8');
  const doc = yaml.load(text);
  // Only the schema part: paths hold OpenAPI objects that are not JSON Schema.
  ajv.addSchema({ components: { schemas: doc.components?.schemas ?? {} } }, f);
  for (const m of text.matchAll(/\$ref:\s*'?([A-Za-z0-9_]+\.yaml)#\/components\/schemas\/([A-Za-z0-9_]+)/g)) {
    if (held.includes(m[1])) continue;
    if (!missing.has(m[1])) missing.set(m[1], new Set());
    missing.get(m[1]).add(m[2]);
  }
}
for (const [f, names] of missing) {
  ajv.addSchema({ components: { schemas: Object.fromEntries([...names].map((n) => [n, {}])) } }, f);
}

let failed = false;
for (let i = 0; i < pairs.length; i += 2) {
  const [name, bodyFile] = [pairs[i], pairs[i + 1]];
  const ref = `${basename(specFile)}#/components/schemas/${name}`;
  let validate;
  try {
    validate = ajv.compile({ $ref: ref });
  } catch (e) {
    console.error(`${ref}: ${e.message}`);
    process.exit(2);
  }
  let body;
  try {
    body = JSON.parse(readFileSync(bodyFile, 'utf8'));
  } catch (e) {
    console.error(`${bodyFile}: not JSON: ${e.message}`);
    failed = true;
    continue;
  }
  if (!validate(body)) {
    failed = true;
    console.error(`${bodyFile} is not a valid ${name}:`);
    for (const e of validate.errors) console.error(`  ${e.instancePath || '/'} ${e.message} ${JSON.stringify(e.params)}`);
  }
}
process.exit(failed ? 1 : 0);

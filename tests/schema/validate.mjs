// Validates JSON bodies against schemas of the official 3GPP OpenAPI files (openapi.mjs).
//   node validate.mjs [--strict] <openapi.yaml> <SchemaName> <body.json> [<SchemaName> <body.json> ...]
// --strict: the body must carry only the members its schemas declare (the check for every
// body m5s sends); without it undeclared members pass as the schemas allow (bodies third
// parties send). Exits 0 when every body is valid, 1 with the errors otherwise, 2 on usage
// errors.
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { openapiValidator } from './openapi.mjs';

const args = process.argv.slice(2);
const strict = args[0] === '--strict';
if (strict) args.shift();
const [specFile, ...pairs] = args;
if (!specFile || pairs.length === 0 || pairs.length % 2 !== 0) {
  console.error('usage: node validate.mjs [--strict] <openapi.yaml> <SchemaName> <body.json> [...]');
  process.exit(2);
}

const check = openapiValidator(dirname(specFile), { strict });
let failed = false;
for (let i = 0; i < pairs.length; i += 2) {
  const [name, bodyFile] = [pairs[i], pairs[i + 1]];
  let body;
  try {
    body = JSON.parse(readFileSync(bodyFile, 'utf8'));
  } catch (e) {
    console.error(`${bodyFile}: not JSON: ${e.message}`);
    failed = true;
    continue;
  }
  let errors;
  try {
    errors = check(specFile, name, body);
  } catch (e) {
    console.error(`${specFile}#/components/schemas/${name}: ${e.message}`);
    process.exit(2);
  }
  if (errors) {
    failed = true;
    console.error(`${bodyFile} is not a valid ${name}${strict ? ' (strict: declared members only)' : ''}:`);
    for (const e of errors) console.error(`  ${e}`);
  }
}
process.exit(failed ? 1 : 0);

// Validators of JSON bodies against the schemas of the official 3GPP OpenAPI files
// (spec/openapi/), shared by validate.mjs (the command line the shell tests call) and the node
// test peers that receive bodies from m5s (tests/schema/push_receiver.mjs).
//
// Every YAML file beside the given one is registered with Ajv under its file name, so the 3GPP
// cross-file $refs ('TS29571_CommonData.yaml#/components/schemas/Supi') resolve; only the
// schemas actually reached are compiled. Schemas in files we do not hold (TS 29.510's
// AccessTokenErr inside ProblemDetails, ...) stand in as "anything": the project never emits
// those members, and everything else is checked. The schemas are OpenAPI 3.0 dialect, which Ajv
// reads with strict mode off (nullable included).
//
// Two modes:
//  - open (default): the schemas as written. OpenAPI objects without additionalProperties
//    accept any undeclared member; this is the check for bodies third parties send to m5s
//    (a peer may extend a body, TS 29.501 cl. 5.2.5).
//  - strict: every object must carry only the members its schema declares. This is the check
//    for every body m5s sends (an undeclared member is our drift from the specification). Done
//    with JSON Schema 2019-09's unevaluatedProperties:false at every place a value sits (the
//    body itself, each property, array item and map value), never on the branches of
//    allOf / anyOf / oneOf: unevaluatedProperties sees the members every successful branch and
//    every $ref declared, so an allOf of two objects accepts the members of both. Objects that
//    declare no members at all (free-form `type: object`), maps (additionalProperties) and the
//    stand-ins of files we do not hold stay open.
import Ajv2019 from 'ajv/dist/2019.js';
import addFormats from 'ajv-formats';
import yaml from 'js-yaml';
import { readFileSync, readdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

const REF = /^([A-Za-z0-9_]+\.yaml)?#\/components\/schemas\/([A-Za-z0-9_]+)$/;
const COMBINERS = ['allOf', 'anyOf', 'oneOf'];

// Closes the schemas of one document in place (strict mode); held = the files we have.
function closeDoc(schemas, held) {
  const seen = new Set();
  const isStandIn = (s) => {
    const m = typeof s?.$ref === 'string' && s.$ref.match(REF);
    return m && m[1] && !held.includes(m[1]);
  };
  // A schema where a value sits: its own members closed, then wrapped.
  const wrap = (s) => {
    if (!s || typeof s !== 'object' || Array.isArray(s) || isStandIn(s)) return s;
    walk(s);
    return { allOf: [s], unevaluatedProperties: false };
  };
  // Every value position inside s is wrapped; combiner branches are walked, not wrapped.
  const walk = (s) => {
    if (!s || typeof s !== 'object' || seen.has(s)) return;
    seen.add(s);
    const freeForm = s.type === 'object' && !s.properties && !s.patternProperties &&
      s.additionalProperties === undefined && !COMBINERS.some((k) => s[k]);
    if (freeForm) s.additionalProperties = true; // "any object": nothing declared to hold to
    if (s.properties) for (const k of Object.keys(s.properties)) s.properties[k] = wrap(s.properties[k]);
    if (s.patternProperties) {
      for (const k of Object.keys(s.patternProperties)) s.patternProperties[k] = wrap(s.patternProperties[k]);
    }
    if (s.additionalProperties && typeof s.additionalProperties === 'object') {
      s.additionalProperties = wrap(s.additionalProperties);
    }
    if (Array.isArray(s.items)) s.items = s.items.map(wrap);
    else if (s.items) s.items = wrap(s.items);
    for (const k of COMBINERS) if (Array.isArray(s[k])) s[k].forEach(walk);
    if (s.not) walk(s.not);
  };
  for (const name of Object.keys(schemas)) walk(schemas[name]);
}

// A validator over every YAML file in dir: returns check(file, schemaName, body) -> null when
// valid, else a list of error lines. Throws when the schema is unknown.
export function openapiValidator(dir, { strict = false } = {}) {
  const ajv = new Ajv2019({ strict: false, allErrors: true, validateSchema: false });
  addFormats(ajv);
  // OpenAPI 3.0 numeric and binary formats: the type check is what matters here.
  for (const f of ['int32', 'int64', 'float', 'double', 'byte', 'binary', 'password']) ajv.addFormat(f, true);
  const held = readdirSync(dir).filter((n) => n.endsWith('.yaml'));
  const missing = new Map(); // file name -> Set of schema names referenced in it
  for (const f of held) {
    const text = readFileSync(join(dir, f), 'utf8');
    const schemas = yaml.load(text).components?.schemas ?? {};
    if (strict) closeDoc(schemas, held);
    // Only the schema part: paths hold OpenAPI objects that are not JSON Schema.
    ajv.addSchema({ components: { schemas } }, f);
    for (const m of text.matchAll(/\$ref:\s*'?([A-Za-z0-9_]+\.yaml)#\/components\/schemas\/([A-Za-z0-9_]+)/g)) {
      if (held.includes(m[1])) continue;
      if (!missing.has(m[1])) missing.set(m[1], new Set());
      missing.get(m[1]).add(m[2]);
    }
  }
  for (const [f, names] of missing) {
    ajv.addSchema({ components: { schemas: Object.fromEntries([...names].map((n) => [n, {}])) } }, f);
  }
  const compiled = new Map();
  return (file, name, body) => {
    const ref = `${basename(file)}#/components/schemas/${name}`;
    let validate = compiled.get(ref);
    if (!validate) {
      validate = ajv.compile(strict ? { allOf: [{ $ref: ref }], unevaluatedProperties: false } : { $ref: ref });
      compiled.set(ref, validate);
    }
    if (validate(body)) return null;
    return validate.errors.map((e) => `${e.instancePath || '/'} ${e.message} ${JSON.stringify(e.params)}`);
  };
}

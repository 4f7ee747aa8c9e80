#!/usr/bin/env node
// Validate YAML files the way an editor does: start yaml-language-server
// over stdio, open each file, and print the diagnostics it publishes. The
// schema comes from each file's `# yaml-language-server: $schema=...` line.
// Exit 0 when no file has an error diagnostic, 1 otherwise.
//
//   node tests/editors/yls-check.js FILE.yaml...
'use strict';
const { spawn } = require('child_process');
const fs = require('fs');
const path = require('path');
const { pathToFileURL } = require('url');

const files = process.argv.slice(2).map((f) => path.resolve(f));
const server = spawn('yaml-language-server', ['--stdio'], { stdio: ['pipe', 'pipe', 'inherit'] });
let buf = Buffer.alloc(0);
let nextId = 1;
const pending = new Map();
const results = new Map();

function send(msg) {
  const body = Buffer.from(JSON.stringify({ jsonrpc: '2.0', ...msg }));
  server.stdin.write(`Content-Length: ${body.length}\r\n\r\n`);
  server.stdin.write(body);
}
function request(method, params) {
  const id = nextId++;
  send({ id, method, params });
  return new Promise((resolve) => pending.set(id, resolve));
}
const settings = { yaml: { validate: true, schemas: {}, schemaStore: { enable: false }, format: { enable: false } } };

server.stdout.on('data', (chunk) => {
  buf = Buffer.concat([buf, chunk]);
  for (;;) {
    const sep = buf.indexOf('\r\n\r\n');
    if (sep < 0) return;
    const m = /Content-Length: (\d+)/i.exec(buf.slice(0, sep).toString());
    const len = Number(m[1]);
    if (buf.length < sep + 4 + len) return;
    const msg = JSON.parse(buf.slice(sep + 4, sep + 4 + len).toString());
    buf = buf.slice(sep + 4 + len);
    if (msg.id !== undefined && msg.method) {
      // A request from the server: configuration, registration, ...
      const result = msg.method === 'workspace/configuration' ? msg.params.items.map(() => settings.yaml) : null;
      send({ id: msg.id, result });
    } else if (msg.id !== undefined && pending.has(msg.id)) {
      pending.get(msg.id)(msg.result);
      pending.delete(msg.id);
    } else if (msg.method === 'textDocument/publishDiagnostics') {
      results.set(msg.params.uri, msg.params.diagnostics);
    }
  }
});

(async () => {
  await request('initialize', { processId: process.pid, rootUri: null, capabilities: { workspace: { configuration: true } } });
  send({ method: 'initialized', params: {} });
  send({ method: 'workspace/didChangeConfiguration', params: { settings } });
  for (const f of files) {
    send({ method: 'textDocument/didOpen', params: { textDocument: { uri: pathToFileURL(f).href, languageId: 'yaml', version: 1, text: fs.readFileSync(f, 'utf8') } } });
  }
  // Diagnostics come asynchronously (the schema is loaded from disk).
  const deadline = Date.now() + 20000;
  while (Date.now() < deadline && files.some((f) => !results.has(pathToFileURL(f).href))) {
    await new Promise((r) => setTimeout(r, 100));
  }
  await new Promise((r) => setTimeout(r, 500));
  let bad = 0;
  for (const f of files) {
    const d = results.get(pathToFileURL(f).href);
    if (d === undefined) {
      console.log(`${f}: no diagnostics published (timeout)`);
      bad++;
      continue;
    }
    const errors = d.filter((x) => x.severity === 1 || x.severity === undefined);
    for (const e of d) console.log(`${f}:${e.range.start.line + 1}:${e.range.start.character + 1}: ${e.message}`);
    if (errors.length) bad++;
  }
  console.log(`${files.length - bad} ok, ${bad} with errors`);
  server.kill();
  process.exit(bad ? 1 : 0);
})();

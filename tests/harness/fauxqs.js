// fauxqs.js - starts the S3 part of fauxqs (in-memory; implements
// AbortMultipartUpload and enforces the 5 MiB minimum part size) on
// 127.0.0.1 for the integration tests; started by s3.py.
//
//   node fauxqs.js PORT BUCKET
//
// fauxqs 1.9.2 (the newest release that runs on Node 20) routes
// ListMultipartUploads (GET /bucket?uploads) to ListObjects. The tests need
// it to prove that an aborted stream leaves no upload behind, so this
// script answers it from fauxqs's own table of open uploads, in the shape
// of the S3 API reference (ListMultipartUploadsResult). fauxqs does not
// check signatures. Prints "ready PORT" once listening.
'use strict';
const path = require('path');
const { pathToFileURL } = require('url');

function esc(s) {
  return String(s)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;');
}

async function main() {
  const [port, bucket] = process.argv.slice(2);
  const { buildApp } = await import('fauxqs');
  const storePath = path.join(__dirname, 'node_modules', 'fauxqs', 'dist', 's3', 's3Store.js');
  const { S3Store } = await import(pathToFileURL(storePath).href);
  const s3Store = new S3Store();
  s3Store.createBucket(bucket);
  const app = buildApp({ logger: false, stores: { s3Store } });
  app.addHook('onRequest', async (req, reply) => {
    const u = new URL(req.url, 'http://localhost');
    const parts = u.pathname.split('/').filter(Boolean);
    if (req.method !== 'GET' || parts.length !== 1 || !u.searchParams.has('uploads')) return;
    const prefix = u.searchParams.get('prefix') || '';
    const uploads = [...s3Store.multipartUploads.values()]
      .filter((m) => m.bucket === parts[0] && m.key.startsWith(prefix))
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    const xml = [
      '<?xml version="1.0" encoding="UTF-8"?>',
      '<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">',
      `<Bucket>${esc(parts[0])}</Bucket><Prefix>${esc(prefix)}</Prefix>`,
      '<IsTruncated>false</IsTruncated>',
      ...uploads.map(
        (m) =>
          `<Upload><Key>${esc(m.key)}</Key><UploadId>${esc(m.uploadId)}</UploadId>` +
          `<Initiated>${m.initiated.toISOString()}</Initiated></Upload>`,
      ),
      '</ListMultipartUploadsResult>',
    ].join('');
    reply.header('content-type', 'application/xml');
    reply.send(xml);
    return reply;
  });
  await app.listen({ port: Number(port), host: '127.0.0.1' });
  console.log(`ready ${port}`);
  process.on('SIGTERM', () => app.close().finally(() => process.exit(0)));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

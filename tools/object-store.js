#!/usr/bin/env node
// The durable local broker's object store: s3rver (an S3-compatible server keeping each object as
// files in a directory), with the two things tansu's s3 engine relies on and s3rver lacks.
//
// 1. Conditional writes. tansu creates a partition's watermark with `If-None-Match: *` and
//    advances it with `If-Match: <etag>`, and writes each batch with `If-None-Match: *`,
//    expecting 412 when the object exists or changed. s3rver ignores both headers: a restarted
//    broker "created" the watermark again at offset 0 and overwrote acknowledged batches. Here a
//    PUT carrying either header is checked and done under a lock of its key.
// 2. Crash-safe objects. s3rver writes an object in place; killed midway, it leaves half an
//    object. Here an object is written to a temporary file, fsynced, renamed over the old one,
//    and its directory fsynced before the PUT is answered: an acknowledged PUT survives a power
//    cut, and a reader never sees half an object.
//
// Usage: node object-store.js --directory DIR --address HOST --port PORT --bucket NAME
'use strict';

const crypto = require('crypto');
const fs = require('fs/promises');
const path = require('path');
const { pick, pickBy } = require('lodash');
const S3rver = require('s3rver');
const S3Object = require('s3rver/lib/models/object');
const FilesystemStore = require('s3rver/lib/stores/filesystem');

function option(name) {
  const at = process.argv.indexOf(`--${name}`);
  if (at < 0 || at + 1 >= process.argv.length) {
    console.error(`usage: object-store.js --directory DIR --address HOST --port PORT --bucket NAME`);
    process.exit(2);
  }
  return process.argv[at + 1];
}

// Atomically (a reader sees the old content or the new, never half); durably only with `sync`.
async function writeAtomically(target, content, sync) {
  const temporary = `${target}.${process.pid}.tmp`;
  const handle = await fs.open(temporary, 'w');
  try {
    await handle.writeFile(content);
    if (sync) await handle.sync();
  } finally {
    await handle.close();
  }
  await fs.rename(temporary, target);
}

async function sameContent(file, content) {
  try {
    return (await fs.readFile(file, 'utf8')) === content;
  } catch (err) {
    if (err.code === 'ENOENT') return false;
    throw err;
  }
}

async function syncDirectory(directory) {
  const handle = await fs.open(directory, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function readAll(stream) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    stream.on('data', chunk => chunks.push(chunk));
    stream.on('error', reject);
    stream.on('end', () => resolve(Buffer.concat(chunks)));
  });
}

// The object's content is fsynced before it is renamed into place, and the directory after:
// then the PUT is answered. Its MD5 (the ETag) and metadata are renamed into place without an
// fsync of their own (the directory's covers the renames): the ETag is only a version tag,
// the same one for GETs and for the conditional writes above, so even one lost to a power cut
// (read back empty) stays consistent. Metadata that did not change is not written again.
FilesystemStore.prototype.putObject = async function putObject(object) {
  const objectPath = this.getResourcePath(object.bucket, object.key, 'object');
  const directory = path.dirname(objectPath);
  await fs.mkdir(directory, { recursive: true });
  const content = Buffer.isBuffer(object.content) ? object.content : await readAll(object.content);
  const md5 = crypto.createHash('md5').update(content).digest('hex');
  await writeAtomically(objectPath, content, true);
  await writeAtomically(`${objectPath}.md5`, md5, false);
  const metadata = JSON.stringify(
    {
      ...pick(object.metadata, S3Object.ALLOWED_METADATA),
      ...pickBy(object.metadata, (value, name) => name.startsWith('x-amz-meta-')),
    },
    null,
    2,
  );
  const metadataPath = this.getResourcePath(object.bucket, object.key, 'metadata.json');
  if (!(await sameContent(metadataPath, metadata))) {
    await writeAtomically(metadataPath, metadata, false);
  }
  await syncDirectory(directory);
  return { size: content.length, md5 };
};

const unquoted = etag => (etag || '').replace(/^W\//, '').replace(/"/g, '');

// One conditional write of a key at a time: the check and the write it guards, together.
const keyLocks = new Map();
async function underKeyLock(key, work) {
  const previous = keyLocks.get(key) || Promise.resolve();
  let release;
  const mine = new Promise(resolve => (release = resolve));
  const chain = previous.then(() => mine);
  keyLocks.set(key, chain);
  await previous;
  try {
    return await work();
  } finally {
    release();
    if (keyLocks.get(key) === chain) keyLocks.delete(key);
  }
}

function fail(ctx, status, code, message) {
  ctx.status = status;
  ctx.type = 'application/xml';
  ctx.body =
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<Error><Code>${code}</Code><Message>${message}</Message></Error>`;
}

async function conditionalWrites(ctx, next) {
  const noneMatch = ctx.get('if-none-match');
  const match = ctx.get('if-match');
  if (ctx.method !== 'PUT' || (!noneMatch && !match)) return next();
  // Path-style requests: /BUCKET/KEY.
  const [bucket, ...parts] = ctx.path.slice(1).split('/').map(decodeURIComponent);
  const key = parts.join('/');
  return underKeyLock(`${bucket}/${key}`, async () => {
    let etag = null;
    try {
      etag = (await ctx.app.store.getMetadata(bucket, key)).etag;
    } catch (err) {
      if (err.code !== 'ENOENT') throw err;
    }
    if (noneMatch === '*' && etag !== null) {
      return fail(ctx, 412, 'PreconditionFailed', 'If-None-Match: the object exists');
    }
    if (match && etag === null) {
      return fail(ctx, 404, 'NoSuchKey', 'If-Match: the object does not exist');
    }
    if (match && match !== '*' && unquoted(match) !== unquoted(etag)) {
      return fail(ctx, 412, 'PreconditionFailed', 'If-Match: the object changed');
    }
    return next();
  });
}

async function main() {
  const server = new S3rver({
    directory: option('directory'),
    address: option('address'),
    port: Number(option('port')),
    configureBuckets: [{ name: option('bucket') }],
    silent: true,
  });
  server.middleware.unshift(conditionalWrites);
  await server.run();
  const stop = () => server.close().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch(err => {
  console.error(err);
  process.exit(1);
});

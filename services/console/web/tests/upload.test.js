import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseLabels, uploadRequest, describeUpload, DATASET_NAME } from '../../src/flakehouse/console/static/js/upload.js';

test('labels: key=value by line, space or comma; a value may hold =', () => {
  assert.deepEqual(parseLabels('branch=main\ncommit=abc, job=a=b'), [
    ['branch', 'main'],
    ['commit', 'abc'],
    ['job', 'a=b'],
  ]);
  assert.deepEqual(parseLabels('  \n'), []);
  assert.throws(() => parseLabels('branch'), /label "branch": write it as key=value/);
  assert.throws(() => parseLabels('=main'), /key=value/);
});

test('an upload request names the file, its labels and a content type the server takes', () => {
  assert.deepEqual(uploadRequest('ci', 'TEST-a b.xml', [['branch', 'main']]), {
    url: '/api/v1/datasets/ci/uploads?filename=TEST-a+b.xml&label=branch%3Dmain',
    type: 'application/xml',
  });
  assert.equal(uploadRequest('ci', 'events.JSONL', []).type, 'application/x-ndjson');
  assert.equal(uploadRequest('ci', 'report', []).type, 'application/octet-stream');
});

test('an upload is described as the CLI says it', () => {
  assert.equal(describeUpload({ events: 3, by_status: { failed: 1, passed: 2 } }), '3 events (failed 1, passed 2)');
  assert.equal(describeUpload({ events: 0, by_status: {} }), '0 events');
});

test('dataset names as the service takes them', () => {
  assert.ok(DATASET_NAME.test('ci-nightly_2'));
  assert.ok(!DATASET_NAME.test('CI'));
  assert.ok(!DATASET_NAME.test('-ci'));
});

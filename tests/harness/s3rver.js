// s3rver.js - starts @20minutes/s3rver (which checks SigV4 signatures) on
// 127.0.0.1 for the integration tests; started by s3.py.
//
//   node s3rver.js PORT DIRECTORY BUCKET ACCESS_KEY SECRET_KEY
//
// s3rver knows one account with the key pair S3RVER/S3RVER; the harness adds
// its own pair to that account so that tests use a distinctive secret (and
// can check that it never shows up in any output). Prints "ready PORT" once
// listening. Stops on SIGTERM.
'use strict';
const S3rver = require('@20minutes/s3rver');
const AWSAccount = require('@20minutes/s3rver/lib/models/account');

const [port, directory, bucket, accessKey, secretKey] = process.argv.slice(2);
AWSAccount.DUMMY_ACCOUNT.createKeyPair(accessKey, secretKey);

const server = new S3rver({
  port: Number(port),
  address: '127.0.0.1',
  directory,
  configureBuckets: [{ name: bucket }],
  silent: true,
});
server.run().then(
  () => console.log(`ready ${port}`),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
process.on('SIGTERM', () => server.close().finally(() => process.exit(0)));

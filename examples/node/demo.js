#!/usr/bin/env node
// Courier from Node.js: a producer with a Checker, and an idempotent consumer.
//
//   (cd examples/node && npm ci)
//   node examples/node/demo.js --addr 127.0.0.1:50051
//   COURIER_TOKEN=... node examples/node/demo.js --addr courier:50051 --ca-file ca.pem
//
// @grpc/proto-loader reads ../../proto at run time, so the client always matches the contract.
// The demo runs two flows against a live Courier and exits 0 only if every step succeeded:
//
// 1. Prepare -> local SQLite transaction -> Confirm; a consumer Receives, records the message
//    in processed_messages in the same SQLite transaction as its business write, Acks;
//    CheckStatus says DELIVERED. A repeated delivery is skipped by the processed_messages row.
// 2. Check-back: Prepare, the local transaction commits, and the producer "crashes" before
//    Confirm. Courier's scheduler calls the Checker served by this script, which finds the
//    order in its own SQLite database and answers COMMIT; the message is confirmed and delivered.
//    The Checker first verifies the JWT Courier signs every call with, against Courier's JWKS
//    (--jwks-url), with Node's own crypto, and refuses other calls with UNAUTHENTICATED.
//
// SQLite is sql.js (SQLite compiled to WebAssembly, in memory). Every name (producer, topic,
// subscription, keys) is unique per run, so the demo can run again against the same server.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const initSqlJs = require('sql.js');

const PROTO_ROOT = path.resolve(__dirname, '..', '..', 'proto');
const RPC_TIMEOUT_MS = 10_000; // every unary call except the long poll
const CHECK_BACK_WAIT_MS = 15_000; // how long the check-back may take before the demo gives up
const DEFAULT_JWKS_URL = 'http://127.0.0.1:9464/.well-known/jwks.json'; // Courier's metrics_listen
const JWT_LEEWAY_SECONDS = 5;

class DemoFailure extends Error {}

const step = (text) => console.log(`==> ${text}`);
const ok = (text) => console.log(`    ok: ${text}`);
function expect(condition, problem) {
  if (!condition) throw new DemoFailure(problem);
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function loadCourier() {
  const dir = path.join(PROTO_ROOT, 'courier', 'v1');
  const files = fs
    .readdirSync(dir)
    .filter((name) => name.endsWith('.proto'))
    .sort()
    .map((name) => `courier/v1/${name}`);
  const definition = protoLoader.loadSync(files, {
    includeDirs: [PROTO_ROOT],
    keepCase: false, // fields in lowerCamelCase, as in the JSON mapping: messageId, checkAfter
    longs: String,
    enums: String, // enum values by name: 'MESSAGE_STATE_CONFIRMED'
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).courier.v1;
}

// Calls a unary method and resolves with its response.
function call(client, method, request, timeoutMs = RPC_TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: Date.now() + timeoutMs }, (error, response) =>
      error ? reject(error) : resolve(response),
    );
  });
}

// The rows of a query with parameters, as objects.
function query(db, sql, params = []) {
  const statement = db.prepare(sql);
  try {
    statement.bind(params);
    const rows = [];
    while (statement.step()) rows.push(statement.getAsObject());
    return rows;
  } finally {
    statement.free();
  }
}

// Runs work inside BEGIN ... COMMIT, rolling back if it throws.
function transaction(db, work) {
  db.run('BEGIN');
  try {
    const result = work();
    db.run('COMMIT');
    return result;
  } catch (error) {
    db.run('ROLLBACK');
    throw error;
  }
}

// Plaintext, or TLS trusting caFile with `authorization: Bearer <token>` on every call.
function channelCredentials(caFile, token) {
  if (!caFile) return grpc.credentials.createInsecure();
  const tls = grpc.credentials.createSsl(fs.readFileSync(caFile));
  if (!token) return tls;
  const bearer = grpc.credentials.createFromMetadataGenerator((_params, callback) => {
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${token}`);
    callback(null, metadata);
  });
  return grpc.credentials.combineChannelCredentials(tls, bearer);
}

// Verifies the `authorization: Bearer <JWT>` Courier signs each call with (EdDSA, Ed25519)
// against its JWKS, fetched once and again whenever a token names a kid it does not know
// (Courier rotated its key). Resolves to the claims; rejects when the call is not Courier's.
class CourierCallVerifier {
  constructor(jwksUrl) {
    this.jwksUrl = jwksUrl;
    this.keys = new Map(); // kid -> KeyObject
  }

  async refresh() {
    const response = await fetch(this.jwksUrl, { signal: AbortSignal.timeout(RPC_TIMEOUT_MS) });
    if (!response.ok) throw new Error(`GET ${this.jwksUrl} answered ${response.status}`);
    const { keys } = await response.json();
    this.keys = new Map(
      keys
        .filter((jwk) => jwk.kty === 'OKP' && jwk.crv === 'Ed25519')
        .map((jwk) => [jwk.kid, crypto.createPublicKey({ key: jwk, format: 'jwk' })]),
    );
  }

  async verify(metadata, audience) {
    const [authorization] = metadata.get('authorization');
    const token = String(authorization ?? '').replace(/^Bearer /, '');
    const [header64, claims64, signature64] = token.split('.');
    if (!signature64) throw new Error('no Bearer JWT');
    const decode = (part) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    const header = decode(header64);
    if (header.alg !== 'EdDSA') throw new Error(`alg ${header.alg}`);
    if (!this.keys.has(header.kid)) await this.refresh();
    const key = this.keys.get(header.kid);
    if (!key) throw new Error(`unknown kid ${header.kid}`);
    const signed = Buffer.from(`${header64}.${claims64}`);
    if (!crypto.verify(null, signed, key, Buffer.from(signature64, 'base64url'))) {
      throw new Error('bad signature');
    }
    const claims = decode(claims64);
    const now = Date.now() / 1000;
    if (claims.iss !== 'courier') throw new Error(`iss ${claims.iss}`);
    if (claims.aud !== audience) throw new Error(`aud ${claims.aud}, not ${audience}`);
    if (!(claims.exp + JWT_LEEWAY_SECONDS > now)) throw new Error('expired');
    if (!(claims.iat - JWT_LEEWAY_SECONDS <= now)) throw new Error('issued in the future');
    return claims;
  }
}

class Demo {
  constructor(courier, SQL, addr, checkerHost, credentials, jwksUrl) {
    this.courier = courier;
    this.addr = addr;
    this.checkerHost = checkerHost;
    const stamp = new Date().toISOString().replace(/\D/g, '').slice(0, 14);
    this.runId = `${stamp}-${crypto.randomBytes(4).toString('hex')}`;
    this.producerName = `js-shop-${this.runId}`;
    this.topic = `js-orders-${this.runId}`;
    this.subscription = `js-billing-${this.runId}`;

    this.admin = new courier.Admin(addr, credentials);
    this.producer = new courier.Producer(addr, credentials);
    this.consumer = new courier.Consumer(addr, credentials);

    // The producer's and the consumer's own databases (two services, two databases).
    this.shopDb = new SQL.Database();
    this.shopDb.run('CREATE TABLE orders (order_no TEXT PRIMARY KEY, total INTEGER NOT NULL)');
    this.billingDb = new SQL.Database();
    this.billingDb.run(
      'CREATE TABLE processed_messages (message_id TEXT PRIMARY KEY, processed_at TEXT NOT NULL)',
    );
    this.billingDb.run('CREATE TABLE invoices (order_no TEXT PRIMARY KEY, amount INTEGER NOT NULL)');

    this.checkerAnswers = []; // [key, decision]
    this.verifier = new CourierCallVerifier(jwksUrl);
    this.checkerEndpoint = ''; // the `aud` of Courier's calls, once the Checker listens
    this.refusedCalls = []; // why calls to the Checker were refused
  }

  async run() {
    step(`connect to Courier at ${this.addr}`);
    await new Promise((resolve, reject) =>
      this.admin.waitForReady(Date.now() + RPC_TIMEOUT_MS, (error) =>
        error
          ? reject(new DemoFailure(`Courier at ${this.addr} did not answer: ${error.message}`))
          : resolve(),
      ),
    );
    ok('channel ready');

    const server = new grpc.Server();
    server.addService(this.courier.Checker.service, { Check: (c, done) => this.check(c, done) });
    const port = await new Promise((resolve, reject) =>
      server.bindAsync(`${this.checkerHost}:0`, grpc.ServerCredentials.createInsecure(), (error, bound) =>
        error ? reject(error) : resolve(bound),
      ),
    );
    this.checkerEndpoint = `http://${this.checkerHost}:${port}`;
    try {
      await this.setup(this.checkerEndpoint);
      await this.twoPhaseFlow();
      await this.checkBackFlow();
    } finally {
      server.forceShutdown();
      for (const client of [this.admin, this.producer, this.consumer]) client.close();
    }
  }

  async setup(checkerEndpoint) {
    step(`create subscription ${this.subscription} on topic ${this.topic}`);
    const sub = await call(this.admin, 'CreateSubscription', {
      subscription: { name: this.subscription, topic: this.topic },
    });
    expect(sub.name === this.subscription && sub.topic === this.topic, `unexpected subscription ${JSON.stringify(sub)}`);
    ok(`created (ack deadline ${sub.ackDeadline.seconds}s)`);

    step(`register the Checker of producer ${this.producerName} at ${checkerEndpoint}`);
    await call(this.producer, 'RegisterChecker', {
      producer: this.producerName,
      endpoint: checkerEndpoint,
      timeout: { seconds: 2 },
    });
    ok('registered');
  }

  async twoPhaseFlow() {
    const orderNo = `order-${this.runId}-1`;
    const messageId = await this.prepare(orderNo, 42);

    step(`local transaction: INSERT order ${orderNo} into the shop's SQLite database`);
    this.commitOrder(orderNo, 42);
    ok('committed');

    step(`Confirm ${messageId}`);
    const confirmed = await call(this.producer, 'Confirm', { message: { messageId } });
    expect(confirmed.state === 'MESSAGE_STATE_CONFIRMED', `Confirm answered ${confirmed.state}`);
    ok(confirmed.state);

    const delivery = await this.consume(messageId);

    step('the same delivery again (as after a crash before the Ack): processed_messages skips it');
    expect(!this.process(delivery), 'the repeated delivery was applied twice');
    const invoices = query(this.billingDb, 'SELECT count(*) AS n FROM invoices WHERE order_no = ?', [orderNo]);
    expect(invoices[0].n === 1, 'the invoice was written twice');
    await this.ack(delivery);
    ok('skipped, one invoice; the repeated Ack is ACK_STATUS_OK');

    await this.expectDelivered(messageId);
  }

  async checkBackFlow() {
    const orderNo = `order-${this.runId}-2`;
    const messageId = await this.prepare(orderNo, 7, 1);

    step(`local transaction: INSERT order ${orderNo}; then the producer 'crashes' before Confirm`);
    this.commitOrder(orderNo, 7);
    ok('committed, never confirmed');

    step(`wait (up to ${CHECK_BACK_WAIT_MS / 1000}s) for Courier's scheduler to ask the Checker`);
    const deadline = Date.now() + CHECK_BACK_WAIT_MS;
    let message;
    for (;;) {
      message = await this.status(messageId);
      if (message.state !== 'MESSAGE_STATE_PREPARED') break;
      expect(
        Date.now() < deadline,
        `still PREPARED after ${CHECK_BACK_WAIT_MS / 1000}s (check attempts ${message.checkAttempts}, ` +
          `last check error ${JSON.stringify(message.lastCheckError)}); is Courier's scheduler running?`,
      );
      await sleep(250);
    }
    expect(message.state === 'MESSAGE_STATE_CONFIRMED', `the check-back made it ${message.state}`);
    const answers = this.checkerAnswers.filter(([key]) => key === orderNo).map(([, decision]) => decision);
    expect(
      answers.includes('DECISION_COMMIT'),
      `confirmed, but the Checker never answered COMMIT for it (answers: ${answers.join(', ')})`,
    );
    ok(`the Checker answered ${answers.join(', ')}; Courier made the message ${message.state}`);
    expect(this.refusedCalls.length === 0, `the Checker refused calls: ${this.refusedCalls.join('; ')}`);
    ok("every call to the Checker carried a JWT that verifies against Courier's JWKS");

    await this.consume(messageId);
    await this.expectDelivered(messageId);
  }

  // ---- producer side ----------------------------------------------------------------------

  async prepare(orderNo, total, checkAfterSeconds) {
    const request = {
      producer: this.producerName,
      topic: this.topic,
      key: orderNo,
      payload: Buffer.from(JSON.stringify({ order_no: orderNo, total })),
      headers: { 'content-type': 'application/json' },
    };
    if (checkAfterSeconds !== undefined) request.checkAfter = { seconds: checkAfterSeconds };
    step(`Prepare ${orderNo}${checkAfterSeconds !== undefined ? ` (check_after ${checkAfterSeconds}s)` : ''}`);
    const prepared = await call(this.producer, 'Prepare', request);
    expect(prepared.created, 'Prepare found an existing message for a fresh key');
    expect(prepared.state === 'MESSAGE_STATE_PREPARED', `Prepare answered ${prepared.state}`);
    ok(`message ${prepared.messageId} ${prepared.state}`);
    return prepared.messageId;
  }

  commitOrder(orderNo, total) {
    transaction(this.shopDb, () =>
      this.shopDb.run('INSERT INTO orders (order_no, total) VALUES (?, ?)', [orderNo, total]),
    );
  }

  async status(messageId) {
    const response = await call(this.producer, 'CheckStatus', { message: { messageId } });
    return response.message;
  }

  async expectDelivered(messageId) {
    step(`CheckStatus ${messageId}`);
    const message = await this.status(messageId);
    expect(message.outcome === 'MESSAGE_OUTCOME_DELIVERED', `outcome is ${message.outcome}`);
    const states = message.deliveries.map((d) => d.state);
    expect(states.length === 1 && states[0] === 'DELIVERY_STATE_ACKED', `deliveries are ${states.join(', ')}`);
    ok(`${message.outcome}, delivery to ${this.subscription} ${states[0]}`);
  }

  // courier.v1.Checker/Check: answers from the shop's own database whether the order committed,
  // once the call proved to come from Courier, about this producer's message.
  check(callObject, done) {
    const request = callObject.request;
    this.verifier.verify(callObject.metadata, this.checkerEndpoint).then(
      (claims) => {
        if (claims.sub === request.producer && claims.message_id === request.messageId) {
          this.answer(request, done);
        } else {
          this.refuse(`token for ${claims.sub}/${claims.message_id}, call for ${request.messageId}`, done);
        }
      },
      (error) => this.refuse(error.message, done),
    );
  }

  refuse(problem, done) {
    this.refusedCalls.push(problem);
    done({ code: grpc.status.UNAUTHENTICATED, details: 'not a call from Courier' });
  }

  answer(request, done) {
    const committed = query(this.shopDb, 'SELECT 1 FROM orders WHERE order_no = ?', [request.key]).length > 0;
    const ageSeconds = Date.now() / 1000 - Number(request.preparedAt?.seconds ?? 0);
    let decision;
    if (committed) decision = 'DECISION_COMMIT';
    else if (ageSeconds > 60) decision = 'DECISION_ROLLBACK'; // older than any transaction of ours
    else decision = 'DECISION_UNKNOWN'; // may still be running: ask again later
    this.checkerAnswers.push([request.key, decision]);
    console.log(`    checker: Check(${request.key}, attempt ${request.checkAttempt}) -> ${decision}`);
    done(null, { decision });
  }

  // ---- consumer side ----------------------------------------------------------------------

  // Receives until the delivery of messageId arrives; processes and acks it.
  async consume(messageId) {
    step(`Receive on ${this.subscription} (long poll)`);
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      const received = await call(this.consumer, 'Receive', {
        subscription: this.subscription,
        maxMessages: 10,
        wait: { seconds: 5 },
      });
      for (const delivery of received.deliveries) {
        ok(`delivery of ${delivery.key} (message ${delivery.messageId}, attempt ${delivery.attempt})`);
        expect(delivery.messageId === messageId, `unexpected delivery ${delivery.messageId}`);
        step('process: processed_messages row and invoice in one SQLite transaction, then Ack');
        expect(this.process(delivery), 'a first delivery was skipped as already processed');
        await this.ack(delivery);
        ok('invoice written; ACK_STATUS_OK');
        return delivery;
      }
    }
    throw new DemoFailure(`no delivery of ${messageId} within 20s`);
  }

  // The idempotent consumer: returns whether the business write was applied.
  process(delivery) {
    const order = JSON.parse(Buffer.from(delivery.payload).toString('utf8'));
    return transaction(this.billingDb, () => {
      this.billingDb.run(
        'INSERT INTO processed_messages (message_id, processed_at) VALUES (?, ?) ON CONFLICT DO NOTHING',
        [delivery.messageId, new Date().toISOString()],
      );
      if (this.billingDb.getRowsModified() !== 1) return false; // processed before: skip the work
      this.billingDb.run('INSERT INTO invoices (order_no, amount) VALUES (?, ?)', [order.order_no, order.total]);
      return true;
    });
  }

  async ack(delivery) {
    const acked = await call(this.consumer, 'Ack', {
      subscription: this.subscription,
      receipts: [delivery.receipt],
    });
    const statuses = acked.results.map((result) => result.status);
    expect(statuses.length === 1 && statuses[0] === 'ACK_STATUS_OK', `Ack answered ${statuses.join(', ')}`);
  }
}

async function main() {
  const { values } = parseArgs({
    options: {
      addr: { type: 'string', default: '127.0.0.1:50051' },
      // Where the demo's Checker listens and Courier calls back; use an address Courier can
      // reach when it runs elsewhere.
      'checker-host': { type: 'string', default: '127.0.0.1' },
      // Connect over TLS trusting this CA certificate (PEM); without it, plaintext.
      'ca-file': { type: 'string' },
      // Bearer token for every call (default: $COURIER_TOKEN); needs --ca-file.
      token: { type: 'string', default: process.env.COURIER_TOKEN },
      // Courier's public keys, to verify the JWT on each call to the Checker.
      'jwks-url': { type: 'string', default: DEFAULT_JWKS_URL },
    },
  });
  if (values.token && !values['ca-file']) {
    throw new DemoFailure('--token needs --ca-file: a token must not travel in plaintext');
  }

  step(`load the protos from ${PROTO_ROOT}`);
  const courier = loadCourier();
  ok('courier.v1 loaded');
  const SQL = await initSqlJs();

  const credentials = channelCredentials(values['ca-file'], values.token);
  await new Demo(
    courier,
    SQL,
    values.addr,
    values['checker-host'],
    credentials,
    values['jwks-url'],
  ).run();
  console.log('demo passed: every step succeeded');
}

main().then(
  () => process.exit(0),
  (error) => {
    const detail = error instanceof DemoFailure ? error.message : error.stack || String(error);
    console.error(`FAILED: ${detail}`);
    process.exit(1);
  },
);

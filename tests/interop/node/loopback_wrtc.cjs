'use strict';
// Keeps the real DISCO client's WebRTC on loopback, as `loopback_only` does for Python peers
// (src/disco/client/decentralized/webrtc.py): tests never touch a network beyond 127.0.0.1 / ::1.
//
// Load it before any peer connects: `node --require ./loopback_wrtc.cjs ...`, or `require` /
// `createRequire(import.meta.url)('./loopback_wrtc.cjs')` at the top of a script (idempotent).
//
// The client (discojs peer.js) builds `new SimplePeer({initiator, wrtc})` itself, with no `config`,
// so the smallest interception is the one `simple-peer` module object it shares with us:
//   1. `SimplePeer.config.iceServers = []`: no STUN/TURN server is ever asked (the default config
//      lists Google's and Twilio's public STUN servers).
//   2. Outgoing signals (`emit('signal')`) and incoming ones (`signal()`): candidate signals whose
//      address is not 127.0.0.1 / ::1 are dropped, and such `a=candidate` lines are cut from
//      offers and answers. So the server relays loopback candidates only.
//   3. On `connect`, simple-peer has just read the selected ICE candidate pair from getStats
//      (`localAddress`, `remoteAddress`): both must be loopback (the remote may be unknown: stats
//      redact peer-reflexive addresses), else the peer is destroyed with an error (fail closed)
//      instead of carrying weights. Every selected pair is recorded.
//
// Step 2 alone does not keep the *local* side on loopback: libwebrtc binds a socket on every
// interface, pairs each with the remote's loopback candidates, and a LAN-address socket reaches
// ::1 just fine ("fd00::2 -> ::1" gets selected). @roamhq/wrtc has no option to ignore interfaces,
// so run node with LD_PRELOAD=loopback_ifaddrs.so (see loopback_ifaddrs.c): libwebrtc then only
// sees lo and gathers 127.0.0.1 / ::1 host candidates. (On this kind of host libwebrtc does gather
// on lo when other interfaces exist, so no address rewriting is needed.)
//
// `report()` returns what happened, for the scripts' JSON result:
//   {iceServers, signals: {candidatesSent, candidatesReceived, dropped, sdpLinesCut},
//    selectedPairs: [{local, remote}], nonLoopbackSelected, shim}

const path = require('node:path');

const STATE = Symbol.for('disco.interop.loopbackWrtc');

const LOOPBACK = new Set(['127.0.0.1', '::1']);

/** The address field of an ICE candidate line ("candidate:f c proto prio ADDRESS port typ ..."). */
function candidateAddress(line) {
  const fields = line.replace(/^a=/, '').trim().split(/\s+/);
  return fields.length >= 6 ? fields[4] : undefined;
}

function isLoopbackAddress(address) {
  if (typeof address !== 'string') return false;
  const bare = address.replace(/^\[|\]$/g, '');
  return LOOPBACK.has(bare);
}

function isLoopbackCandidate(line) {
  return isLoopbackAddress(candidateAddress(line));
}

function install() {
  if (globalThis[STATE] !== undefined) return globalThis[STATE];
  // Resolve simple-peer exactly as the client does (from its own file), to patch that module object.
  const peerFile = require.resolve(
    '@epfml/discojs-node/dist/core/client/decentralized/peer.js',
    { paths: [process.cwd(), __dirname] },
  );
  const SimplePeer = require(require.resolve('simple-peer', { paths: [path.dirname(peerFile)] }));

  const state = {
    signals: { candidatesSent: 0, candidatesReceived: 0, dropped: 0, sdpLinesCut: 0 },
    selectedPairs: [],
    nonLoopbackSelected: 0,
  };

  SimplePeer.config = { ...SimplePeer.config, iceServers: [] };

  /** The signal with non-loopback candidates removed, or undefined when nothing is left of it. */
  function filterSignal(signal, direction) {
    if (signal === null || typeof signal !== 'object') return signal;
    if (signal.type === 'candidate' || signal.candidate !== undefined) {
      const line = signal.candidate && signal.candidate.candidate;
      if (typeof line !== 'string' || line === '') return signal; // end-of-candidates marker
      if (!isLoopbackCandidate(line)) {
        state.signals.dropped += 1;
        return undefined;
      }
      state.signals[direction === 'out' ? 'candidatesSent' : 'candidatesReceived'] += 1;
      return signal;
    }
    if (typeof signal.sdp === 'string') {
      const lines = signal.sdp.split('\r\n');
      const kept = lines.filter((l) => !l.startsWith('a=candidate:') || isLoopbackCandidate(l));
      state.signals.sdpLinesCut += lines.length - kept.length;
      return { ...signal, sdp: kept.join('\r\n') };
    }
    return signal;
  }

  const originalEmit = SimplePeer.prototype.emit;
  SimplePeer.prototype.emit = function emit(event, ...args) {
    if (event === 'signal') {
      const filtered = filterSignal(args[0], 'out');
      if (filtered === undefined) return false;
      return originalEmit.call(this, event, filtered, ...args.slice(1));
    }
    if (event === 'connect') {
      const pair = { local: this.localAddress ?? null, remote: this.remoteAddress ?? null };
      state.selectedPairs.push(pair);
      // A remote address is missing when the pair's remote candidate is peer-reflexive (learnt
      // from a check that arrived before its signal): libwebrtc redacts those in getStats. The
      // local socket decides the path then: one bound to a loopback address only talks on lo.
      const remoteOk = pair.remote === null || pair.remote === '' || isLoopbackAddress(pair.remote);
      if (!isLoopbackAddress(pair.local) || !remoteOk) {
        state.nonLoopbackSelected += 1;
        this.destroy(new Error(
          `selected ICE candidate pair ${pair.local} -> ${pair.remote} is not loopback ` +
          '(run node with LD_PRELOAD=loopback_ifaddrs.so)',
        ));
        return false;
      }
    }
    return originalEmit.call(this, event, ...args);
  };

  const originalSignal = SimplePeer.prototype.signal;
  SimplePeer.prototype.signal = function signal(data) {
    let parsed = data;
    if (typeof parsed === 'string') {
      try { parsed = JSON.parse(parsed); } catch { return originalSignal.call(this, data); }
    }
    const filtered = filterSignal(parsed, 'in');
    if (filtered === undefined) return undefined;
    return originalSignal.call(this, filtered);
  };

  const api = {
    isLoopbackCandidate,
    isLoopbackAddress,
    report() {
      return {
        iceServers: SimplePeer.config.iceServers,
        signals: { ...state.signals },
        selectedPairs: state.selectedPairs.slice(),
        nonLoopbackSelected: state.nonLoopbackSelected,
        shim: /loopback_ifaddrs/.test(process.env.LD_PRELOAD || ''),
      };
    },
  };
  globalThis[STATE] = api;
  return api;
}

module.exports = install();

// Speaks to the signaling server through the real @epfml/discojs-node@2.1.1 client classes
// (its WebSocket wrapper and message validators, as client/decentralized/base.js uses them) and
// checks that the server's replies never make that client throw:
//   node js_signaling_probe.cjs <ws base url> <taskID> <unknown peer id>
// Prints one JSON line {id, peers} and exits 0; an uncaught error exits non-zero.
'use strict'
const { createRequire } = require('module')
const req = createRequire(process.cwd() + '/')
const base = '@epfml/discojs-node/dist/core/client/'
const events = req(base + 'event_connection')
const messages = req(base + 'decentralized/messages')

const [url, taskID, unknownPeer] = process.argv.slice(2)
const overall = setTimeout(() => { console.error('probe timed out'); process.exit(2) }, 20000)

async function main () {
  const server = await events.WebSocketServer.connect(
    new URL(`${url}/deai/${taskID}`), messages.isMessageFromServer, messages.isMessageToServer)
  // base.js hands every SignalForPeer to its peer pool, which throws for an unknown peer.
  server.on(2, (event) => { throw new Error(`unexpected signal from ${event.peer}`) })
  server.send({ type: 0 })
  const { id } = await events.waitMessage(server, 1)
  // A signal nobody can receive: the error reply must not crash the client.
  server.send({ type: 2, peer: Number(unknownPeer), signal: { type: 'offer', sdp: 'v=0' } })
  await new Promise((resolve) => setTimeout(resolve, 300))
  server.send({ type: 3 })
  const round = await events.waitMessageWithTimeout(server, 4, 10000)
  server.disconnect()
  clearTimeout(overall)
  console.log(JSON.stringify({ id, peers: round.peers }))
  process.exit(0) // the client's own 10 s reply timer would keep node alive
}

main().catch((error) => { console.error(error); process.exit(1) })

/**
 * Federated secure aggregation in the browser (docs/web-engine.md "Secure aggregation"): the
 * same arithmetic and messages as `disco.secagg` and `disco.aggregation.masking`/`shamir`.
 */

export {
  DEFAULT_FRACTIONAL_BITS, FixedPointError, addInto, decode, encode, encodingLimit, expand, mask,
  roundHalfEven, subtractInto, toBytes,
} from "./fixedpoint.js";
export type { FixedVector } from "./fixedpoint.js";
export { PRIME, SHARE_BYTES, ShamirError, combine, evaluate, shareFromBytes, shareToBytes, split } from "./shamir.js";
export { KeyPair, SecAggError, commitment, decrypt, derive, encrypt, supportedCurves } from "./keys.js";
export type { Curve, Purpose } from "./keys.js";
export { Participant, Roster, neighbours } from "./participant.js";
export type { PublicKeys, Shares } from "./participant.js";
export { SecureFederatedCommunicator, weightedVector } from "./communicator.js";

// The machine-wide KSM lock lives in src/host/ksm-lock.ts (the bench entries take it too).
export { lockKsm } from '../../src/host/ksm-lock.js';

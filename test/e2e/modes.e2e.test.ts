// Issue 3: every data-connection mode through the gateway, end to end, on the
// relay plane (the default). The matrix itself is in lib/modesMatrix.ts.
import { defineModesMatrix } from './lib/modesMatrix.js';

defineModesMatrix('relay');

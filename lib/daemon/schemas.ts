/** The JSON-schema pieces sosd's ops share (ajv checks every request against its op's schema). */
import { APP_NAME } from '../apps/names.js';

/** An application's name (as lib/apps/names.ts checks it). */
export const APP = { type: 'string', pattern: APP_NAME.source } as const;
/** A node's name, as the ops accept it. */
export const NODE = APP;
/** A process's number within its application (also a checkpoint's). */
export const ID = { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER } as const;

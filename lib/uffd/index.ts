/**
 * serverlessos/uffd — all of Linux userfaultfd from TypeScript: regions,
 * the handshake, registration, every resolving ioctl, events, and a native
 * fault engine.
 */
export { Region, type Protection, type Advice, type RegionOptions } from './region.js';
export {
  Userfaultfd,
  ALL_FEATURES,
  type KernelSupport,
  type KernelSupportJSON,
  type ApiResult,
  type UserfaultfdEvents,
  type OpenOptions,
  type RegisterModes,
  type Where,
} from './userfaultfd.js';
export { FaultEngine, type EngineOptions, type FaultEngineEvents, type UnservedEvent } from './engine.js';
export type { EngineStats, LatencySummary, TouchResult } from './stats.js';
export { PageSource } from './source.js';
export { touch, type TouchOptions } from './touch.js';
export { FEATURES, IOCTLS, type Feature, type Ioctl } from './constants.js';
export type { UffdEvent, PageFaultEvent, ForkEvent, RemapEvent, RemoveEvent, UnmapEvent } from './events.js';

import { native } from '../native/index.js';
/** The system page size. */
export const PAGE_SIZE: number = native.pageSize;

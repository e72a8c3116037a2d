import { Inject, Injectable } from '@nestjs/common';
import { LRUCache } from 'lru-cache';
import { limitsConfig, type LimitsConfig } from '../config/config.js';
import { parseManifestDescriptors, relativePath, type RepositoryName } from '../oci/index.js';
import { isCacheableBlob } from './cache-policy.js';

/** Blob successors one replica keeps (one per layer of the manifests it fetched; the oldest go first). */
const REMEMBERED_LAYERS = 10_000;
/** How long a manifest's layer order is kept: a pull asks for its layers within moments of its manifest. */
const REMEMBERED_FOR_MS = 10 * 60_000;

/** A blob to read ahead: its path under the repository and the size its manifest gives. */
export interface ReadAheadBlob {
  readonly path: string;
  readonly size: number;
}

/**
 * The blob order of the image manifests this replica fetched lately, for reading ahead (ProxyBlobStore):
 * a client that copies an image one blob at a time (skopeo or crane into a directory, containers/image
 * with one download at a time) spends a while on each layer after its last byte (verifying it, syncing
 * its own file) before it asks for the next. When a client asks for one layer, the next blob of the same
 * manifest is filled from the same upstream (ProxyBlobStore decides when: by its size), so the client
 * finds it stored, or filling, when it asks. One blob ahead, and only behind a client that asked for the
 * one before. After the last layer comes the config: containers/image (skopeo, podman, CRI-O) asks for it
 * last; a client that asked for it first (containerd) has it stored by then: nothing is downloaded again.
 *
 * Keyed by upstream: a layer's successor is that upstream's manifest's word, and read ahead only from it
 * (a verified GET of that upstream's own bytes, as a client's miss would make: SPEC section 3, item 7).
 * Each successor is taken once: concurrent pulls of one image read ahead once, a warm pull not at all.
 */
@Injectable()
export class LayerReadAhead {
  private readonly successors?: LRUCache<string, ReadAheadBlob>;

  constructor(@Inject(limitsConfig.KEY) private readonly limits: LimitsConfig) {
    if (limits.blobReadAhead) this.successors = new LRUCache<string, ReadAheadBlob>({ max: REMEMBERED_LAYERS, ttl: REMEMBERED_FOR_MS });
  }

  get enabled(): boolean {
    return this.successors !== undefined;
  }

  /** An image manifest `upstreamId` served for repository `name`: its layers in order, then its config (an index has none). */
  noteManifest(upstreamId: number, name: RepositoryName | string, bytes: Uint8Array): void {
    if (!this.successors) return;
    let descriptors;
    try {
      descriptors = parseManifestDescriptors(bytes);
    } catch {
      return; // stored as the upstream sent it; only its layers are not read ahead
    }
    // foreign layers (`urls`) are fetched by clients from those URLs, never from a registry
    const layers = descriptors.layers.filter((layer) => !layer.urls?.length);
    const order = descriptors.config && layers.length > 0 ? [...layers, descriptors.config] : layers;
    for (let i = 0; i + 1 < order.length; i++) {
      const next = order[i + 1];
      // a blob too large to cache would only pass through: nothing to read ahead
      if (!isCacheableBlob(next.size, this.limits.maxCachedFileSize)) continue;
      this.successors.set(key(upstreamId, relativePath(name, 'blob', order[i].digest)), { path: relativePath(name, 'blob', next.digest), size: next.size });
    }
  }

  /** The blob after `path` in a manifest `upstreamId` served lately; undefined after the first call. */
  takeSuccessor(upstreamId: number, path: string): ReadAheadBlob | undefined {
    if (!this.successors) return undefined;
    const k = key(upstreamId, path);
    const next = this.successors.get(k);
    if (next !== undefined) this.successors.delete(k);
    return next;
  }
}

function key(upstreamId: number, path: string): string {
  return `${upstreamId} ${path}`;
}

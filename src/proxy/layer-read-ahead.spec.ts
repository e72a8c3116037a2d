import { describe, expect, it } from '@jest/globals';
import type { LimitsConfig } from '../config/config.js';
import { LayerReadAhead } from './layer-read-ahead.js';

const digest = (c: string) => 'sha256:' + c.repeat(64);
const layerPath = (c: string) => `/library/app/blobs/${digest(c)}`;
const configPath = `/library/app/blobs/${digest('f')}`;
/** The successor LayerReadAhead names: a layer of 10 bytes unless said otherwise. */
const blob = (c: string, size = 10) => ({ path: layerPath(c), size });

function manifest(layers: Array<{ c: string; urls?: string[]; size?: number }>, mediaType = 'application/vnd.oci.image.manifest.v1+json'): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digest('f'), size: 2 },
      layers: layers.map(({ c, urls, size }) => ({
        mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
        digest: digest(c),
        size: size ?? 10,
        ...(urls ? { urls } : {}),
      })),
    }),
  );
}

const readAhead = (blobReadAhead = true) => new LayerReadAhead({ blobReadAhead, maxCachedFileSize: 1000 } as LimitsConfig);

describe('LayerReadAhead', () => {
  it("names each layer's successor in the manifest's order with its size, once, then the config, and nothing after it", () => {
    const order = readAhead();
    order.noteManifest(1, 'library/app', manifest([{ c: 'a' }, { c: 'b', size: 700 }, { c: 'c' }]));
    expect(order.takeSuccessor(1, layerPath('a'))).toEqual(blob('b', 700));
    expect(order.takeSuccessor(1, layerPath('a'))).toBeUndefined();
    expect(order.takeSuccessor(1, layerPath('b'))).toEqual(blob('c'));
    // containers/image clients ask for the config after the last layer
    expect(order.takeSuccessor(1, layerPath('c'))).toEqual({ path: configPath, size: 2 });
    expect(order.takeSuccessor(1, layerPath('c'))).toBeUndefined();
    expect(order.takeSuccessor(1, configPath)).toBeUndefined();
  });

  it('reads no config ahead of a manifest without layers', () => {
    const order = readAhead();
    order.noteManifest(1, 'library/app', manifest([]));
    expect(order.takeSuccessor(1, configPath)).toBeUndefined();
  });

  it("keeps a manifest's order for the upstream that served it only", () => {
    const order = readAhead();
    order.noteManifest(1, 'library/app', manifest([{ c: 'a' }, { c: 'b' }]));
    expect(order.takeSuccessor(2, layerPath('a'))).toBeUndefined();
    expect(order.takeSuccessor(1, '/library/other/blobs/' + digest('a'))).toBeUndefined();
    expect(order.takeSuccessor(1, layerPath('a'))).toEqual(blob('b'));
  });

  it('skips foreign layers (fetched by clients from their URLs) and notes nothing of an index or of bytes that are no manifest', () => {
    const order = readAhead();
    order.noteManifest(1, 'library/app', manifest([{ c: 'a' }, { c: 'b', urls: ['https://example.com/b'] }, { c: 'c' }]));
    expect(order.takeSuccessor(1, layerPath('a'))).toEqual(blob('c'));

    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: digest('d'), size: 5 }],
      }),
    );
    order.noteManifest(1, 'library/app', index);
    order.noteManifest(1, 'library/app', Buffer.from('not json'));
    expect(order.takeSuccessor(1, `/library/app/blobs/${digest('d')}`)).toBeUndefined();
  });

  it('reads no layer ahead that is too large to cache (MAX_CACHED_FILE_SIZE), and goes on after it', () => {
    const order = readAhead();
    order.noteManifest(1, 'library/app', manifest([{ c: 'a' }, { c: 'b', size: 1001 }, { c: 'c', size: 1000 }]));
    expect(order.takeSuccessor(1, layerPath('a'))).toBeUndefined();
    expect(order.takeSuccessor(1, layerPath('b'))).toEqual(blob('c', 1000));
  });

  it('remembers nothing with BLOB_READ_AHEAD=false', () => {
    const order = readAhead(false);
    expect(order.enabled).toBe(false);
    order.noteManifest(1, 'library/app', manifest([{ c: 'a' }, { c: 'b' }]));
    expect(order.takeSuccessor(1, layerPath('a'))).toBeUndefined();
  });
});

// Custom key stores (CloudHSM and external): list with connection state, create, connect,
// disconnect, their keys; and the CloudHSM clusters with their HSMs (read-only).
import { html, nothing, type TemplateResult } from 'lit';
import {
  ConnectCustomKeyStoreCommand,
  CreateCustomKeyStoreCommand,
  DescribeCustomKeyStoresCommand,
  DisconnectCustomKeyStoreCommand,
  type CustomKeyStoresListEntry,
  type XksProxyConnectivityType,
} from '@aws-sdk/client-kms';
import { describeClusters, type Cluster } from '../api';
import { field, inlineError, settle, when, type Ctx, type Loaded } from '../ui';
import { listKeys, type KeyRow } from './keys';

const s: {
  stores: Loaded<CustomKeyStoresListEntry[]> | null;
  clusters: Loaded<Cluster[]> | null;
  keys: KeyRow[];
  type: 'AWS_CLOUDHSM' | 'EXTERNAL_KEY_STORE';
} = { stores: null, clusters: null, keys: [], type: 'AWS_CLOUDHSM' };

/** Loads stores, clusters and keys. */
export async function load(ctx: Ctx): Promise<void> {
  const [stores, clusters, keys] = await Promise.all([
    settle(ctx.kms.send(new DescribeCustomKeyStoresCommand({ Limit: 1000 })).then((r) => r.CustomKeyStores || [])),
    settle(describeClusters(ctx.creds).then((r) => r.Clusters || [])),
    settle(listKeys(ctx)),
  ]);
  Object.assign(s, { stores, clusters, keys: keys.ok ? keys.value.rows : [] });
}

async function act(ctx: Ctx, what: string, action: () => Promise<unknown>, done: string): Promise<void> {
  const ok = await ctx.run(what, async () => {
    await action();
    return true;
  });
  if (ok) {
    await load(ctx);
    ctx.message = { kind: 'ok', text: done };
    ctx.update();
  }
}

async function create(ctx: Ctx, e: SubmitEvent): Promise<void> {
  e.preventDefault();
  const f = e.target as HTMLFormElement;
  const name = field(f, 'name');
  const input =
    s.type === 'AWS_CLOUDHSM'
      ? {
          CustomKeyStoreName: name,
          CustomKeyStoreType: 'AWS_CLOUDHSM' as const,
          CloudHsmClusterId: field(f, 'cluster'),
          TrustAnchorCertificate: (f.elements.namedItem('trustAnchor') as HTMLTextAreaElement).value,
          KeyStorePassword: field(f, 'password'),
        }
      : {
          CustomKeyStoreName: name,
          CustomKeyStoreType: 'EXTERNAL_KEY_STORE' as const,
          XksProxyConnectivity: field(f, 'connectivity') as XksProxyConnectivityType,
          XksProxyUriEndpoint: field(f, 'endpoint'),
          XksProxyUriPath: field(f, 'path'),
          XksProxyVpcEndpointServiceName: field(f, 'vpcService') || undefined,
          XksProxyAuthenticationCredential: {
            AccessKeyId: field(f, 'proxyKeyId'),
            RawSecretAccessKey: field(f, 'proxySecret'),
          },
        };
  await act(ctx, 'Creating the key store', () => ctx.kms.send(new CreateCustomKeyStoreCommand(input)), `Key store ${name} created; connect it to use it.`);
  if (ctx.message?.kind === 'ok') f.reset();
}

function storesTable(ctx: Ctx, stores: CustomKeyStoresListEntry[]): TemplateResult {
  if (stores.length === 0) return html`<p class="muted">No custom key stores.</p>`;
  return html`<table data-testid="stores-table">
    <thead>
      <tr><th scope="col">Name</th><th scope="col">ID</th><th scope="col">Type</th><th scope="col">Connection</th><th scope="col">Backed by</th><th scope="col">Keys</th><th scope="col"><span class="sr-only">Actions</span></th></tr>
    </thead>
    <tbody>
      ${stores.map((k) => {
        const id = k.CustomKeyStoreId as string;
        const keys = s.keys.filter((r) => r.meta?.CustomKeyStoreId === id);
        const connected = k.ConnectionState === 'CONNECTED' || k.ConnectionState === 'CONNECTING';
        return html`<tr>
          <td>${k.CustomKeyStoreName}</td>
          <td class="mono small">${id}</td>
          <td>${k.CustomKeyStoreType || 'AWS_CLOUDHSM'}</td>
          <td><span class="badge conn-${(k.ConnectionState || '').toLowerCase()}">${k.ConnectionState}</span>${k.ConnectionErrorCode ? html`<div class="inline-error small">${k.ConnectionErrorCode}</div>` : nothing}</td>
          <td class="small">${k.CloudHsmClusterId || k.XksProxyConfiguration?.UriEndpoint || '—'}</td>
          <td class="small">${keys.length ? keys.map((r) => html`<a class="mono" href="#/keys/${r.keyId}">${r.aliases[0] || r.keyId}</a> `) : html`<span class="muted">none</span>`}</td>
          <td>
            ${connected
              ? html`<button type="button" class="secondary" @click=${() => act(ctx, 'Disconnecting', () => ctx.kms.send(new DisconnectCustomKeyStoreCommand({ CustomKeyStoreId: id })), `${k.CustomKeyStoreName} disconnected.`)}>Disconnect</button>`
              : html`<button type="button" @click=${() => act(ctx, 'Connecting', () => ctx.kms.send(new ConnectCustomKeyStoreCommand({ CustomKeyStoreId: id })), `${k.CustomKeyStoreName}: connecting.`)}>Connect</button>`}
          </td>
        </tr>`;
      })}
    </tbody>
  </table>`;
}

function clustersView(clusters: Cluster[]): TemplateResult {
  if (clusters.length === 0) return html`<p class="muted">No HSM clusters (kmsd serves them with <code>--hsm-config</code>).</p>`;
  return html`<table>
    <thead><tr><th scope="col">Cluster</th><th scope="col">State</th><th scope="col">HSM type</th><th scope="col">HSMs</th><th scope="col">Created</th></tr></thead>
    <tbody>
      ${clusters.map(
        (c) => html`<tr>
          <td class="mono small">${c.ClusterId}</td>
          <td>${c.State}${c.StateMessage ? html`<div class="muted small">${c.StateMessage}</div>` : nothing}</td>
          <td>${c.HsmType || ''}</td>
          <td class="small">${(c.Hsms || []).map((h) => html`<div><span class="mono">${h.HsmId}</span> ${h.State} ${h.AvailabilityZone || ''} ${h.EniIp || ''}</div>`)}</td>
          <td>${when(c.CreateTimestamp)}</td>
        </tr>`,
      )}
    </tbody>
  </table>`;
}

/** The page. */
export function view(ctx: Ctx): TemplateResult {
  return html`
    <div class="title-row">
      <h1 tabindex="-1">Custom key stores</h1>
      <button type="button" class="secondary" @click=${async () => { await load(ctx); ctx.update(); }}>Refresh</button>
    </div>
    ${!s.stores ? html`<p class="muted">Loading…</p>` : s.stores.ok ? storesTable(ctx, s.stores.value) : inlineError(s.stores.error)}
    <section aria-labelledby="h-new-store">
      <h2 id="h-new-store">Create a key store</h2>
      <form class="wizard" @submit=${(e: SubmitEvent) => create(ctx, e)}>
        <fieldset>
          <legend>Type</legend>
          <label class="check"><input type="radio" name="type" value="AWS_CLOUDHSM" .checked=${s.type === 'AWS_CLOUDHSM'} @change=${() => { s.type = 'AWS_CLOUDHSM'; ctx.update(); }} /> CloudHSM key store (an HSM cluster of kmsd)</label>
          <label class="check"><input type="radio" name="type" value="EXTERNAL_KEY_STORE" .checked=${s.type === 'EXTERNAL_KEY_STORE'} @change=${() => { s.type = 'EXTERNAL_KEY_STORE'; ctx.update(); }} /> External key store (an XKS proxy)</label>
        </fieldset>
        <label for="store-name">Name</label>
        <input id="store-name" name="name" required maxlength="256" />
        ${s.type === 'AWS_CLOUDHSM'
          ? html`<label for="cluster">CloudHSM cluster</label>
              <select id="cluster" name="cluster" required>
                ${s.clusters?.ok ? s.clusters.value.map((c) => html`<option value=${c.ClusterId}>${c.ClusterId} (${c.State})</option>`) : nothing}
              </select>
              <label for="trustAnchor">Trust anchor certificate (PEM, the cluster's issuing CA)</label>
              <textarea id="trustAnchor" name="trustAnchor" rows="5" required class="mono" spellcheck="false"></textarea>
              <label for="password">kmsuser password</label>
              <input id="password" name="password" type="password" required minlength="7" maxlength="32" autocomplete="off" />`
          : html`<label for="connectivity">Proxy connectivity</label>
              <select id="connectivity" name="connectivity"><option value="PUBLIC_ENDPOINT">PUBLIC_ENDPOINT</option><option value="VPC_ENDPOINT_SERVICE">VPC_ENDPOINT_SERVICE</option></select>
              <label for="endpoint">Proxy URI endpoint</label>
              <input id="endpoint" name="endpoint" required placeholder="https://xks.example.com" spellcheck="false" />
              <label for="path">Proxy URI path</label>
              <input id="path" name="path" required value="/kms/xks/v1" spellcheck="false" />
              <label for="vpcService">VPC endpoint service name <span class="muted">(VPC connectivity only)</span></label>
              <input id="vpcService" name="vpcService" spellcheck="false" />
              <label for="proxyKeyId">Proxy authentication: access key ID</label>
              <input id="proxyKeyId" name="proxyKeyId" required spellcheck="false" autocomplete="off" />
              <label for="proxySecret">Proxy authentication: secret access key</label>
              <input id="proxySecret" name="proxySecret" type="password" required autocomplete="off" />`}
        <button type="submit">Create key store</button>
      </form>
    </section>
    <section aria-labelledby="h-clusters">
      <h2 id="h-clusters">CloudHSM clusters</h2>
      ${!s.clusters ? html`<p class="muted">Loading…</p>` : s.clusters.ok ? clustersView(s.clusters.value) : inlineError(s.clusters.error)}
    </section>
  `;
}

// Talking to kmsd: the KMS API through @aws-sdk/client-kms, and STS GetCallerIdentity,
// kmsd's audit read (Kmsd.ReadAuditRecords) and CloudHSM v2 reads through requests signed
// with the SDK's own SigV4 signer. Everything goes to the page's own origin (kmsd), so kmsd's
// access control and audit apply exactly as to any SDK.
import { KMSClient } from '@aws-sdk/client-kms';
import { SignatureV4 } from '@smithy/signature-v4';
import { Sha256 } from '@aws-crypto/sha256-js';

/** The signed-in user's credentials (kept in sessionStorage only). */
export interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  region: string;
}

/** Who the credentials belong to (STS GetCallerIdentity). */
export interface Identity {
  account: string;
  arn: string;
  userId: string;
}

/** An error answered by kmsd (or the network), with the AWS error code. */
export class ApiError extends Error {
  constructor(
    public code: string,
    message: string,
    public status?: number,
  ) {
    super(message);
    this.name = code;
  }
}

const STORAGE_KEY = 'kmsd-console-credentials';

/** Credentials saved in this tab's session, if any. */
export function loadCredentials(): Credentials | null {
  const text = sessionStorage.getItem(STORAGE_KEY);
  if (!text) return null;
  try {
    const c = JSON.parse(text) as Credentials;
    return c.accessKeyId && c.secretAccessKey && c.region ? c : null;
  } catch {
    return null;
  }
}

/** Keeps credentials for this tab's session (sessionStorage: gone when the tab closes). */
export function saveCredentials(c: Credentials): void {
  sessionStorage.setItem(STORAGE_KEY, JSON.stringify(c));
}

/** Forgets the credentials (sign-out). */
export function clearCredentials(): void {
  sessionStorage.removeItem(STORAGE_KEY);
}

/** A KMS client for kmsd at this page's origin. */
export function kmsClient(c: Credentials): KMSClient {
  return new KMSClient({
    region: c.region,
    endpoint: window.location.origin,
    credentials: {
      accessKeyId: c.accessKeyId,
      secretAccessKey: c.secretAccessKey,
      sessionToken: c.sessionToken || undefined,
    },
    maxAttempts: 1,
  });
}

/** Turns anything thrown by a call into an ApiError (never a silent success). */
export function toApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  if (e && typeof e === 'object') {
    const o = e as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
    const code = o.name && o.name !== 'Error' ? o.name : 'Error';
    return new ApiError(code, o.message || String(e), o.$metadata?.httpStatusCode);
  }
  return new ApiError('Error', String(e));
}

/** POSTs `body` to kmsd signed with SigV4 for `service`; returns the response text. */
async function signedPost(
  c: Credentials,
  service: string,
  headers: Record<string, string>,
  body: string,
): Promise<{ status: number; text: string; headers: Headers }> {
  const signer = new SignatureV4({
    service,
    region: c.region,
    sha256: Sha256,
    credentials: {
      accessKeyId: c.accessKeyId,
      secretAccessKey: c.secretAccessKey,
      sessionToken: c.sessionToken || undefined,
    },
  });
  const url = new URL(window.location.origin);
  const signed = await signer.sign({
    method: 'POST',
    protocol: url.protocol,
    hostname: url.hostname,
    port: url.port ? Number(url.port) : undefined,
    path: '/',
    query: {},
    headers: { ...headers, host: url.host },
    body,
  });
  const sendHeaders: Record<string, string> = {};
  for (const [k, v] of Object.entries(signed.headers)) {
    // The browser sets Host itself (to the same value that was signed).
    if (k.toLowerCase() !== 'host') sendHeaders[k] = v as string;
  }
  let r: Response;
  try {
    r = await fetch(url.origin + '/', { method: 'POST', headers: sendHeaders, body, credentials: 'omit' });
  } catch (e) {
    throw new ApiError('NetworkError', `kmsd could not be reached: ${String(e)}`);
  }
  return { status: r.status, text: await r.text(), headers: r.headers };
}

/** Calls a JSON 1.1 operation (`target` is the full X-Amz-Target). */
export async function jsonCall<T>(c: Credentials, service: string, target: string, input: object): Promise<T> {
  const r = await signedPost(
    c,
    service,
    { 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': target },
    JSON.stringify(input),
  );
  let body: Record<string, unknown> = {};
  try {
    body = r.text ? JSON.parse(r.text) : {};
  } catch {
    throw new ApiError('SerializationException', `kmsd answered ${r.status} with a body that is not JSON`, r.status);
  }
  if (r.status !== 200) {
    const type = String(body.__type || r.headers.get('x-amzn-errortype') || 'Error').split('#').pop() || 'Error';
    throw new ApiError(type, String(body.message || body.Message || `HTTP ${r.status}`), r.status);
  }
  return body as T;
}

/** STS GetCallerIdentity, answered by kmsd. */
export async function getCallerIdentity(c: Credentials): Promise<Identity> {
  const r = await signedPost(
    c,
    'sts',
    { 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' },
    'Action=GetCallerIdentity&Version=2011-06-15',
  );
  const doc = new DOMParser().parseFromString(r.text, 'application/xml');
  const text = (name: string) => doc.getElementsByTagName(name)[0]?.textContent ?? '';
  if (r.status !== 200) {
    throw new ApiError(text('Code') || 'Error', text('Message') || `HTTP ${r.status}`, r.status);
  }
  return { account: text('Account'), arn: text('Arn'), userId: text('UserId') };
}

/** Filters of the audit read; every given one must match. */
export interface AuditFilter {
  Limit?: number;
  KeyId?: string;
  Principal?: string;
  EventName?: string;
  ErrorCode?: string;
  ExcludeEventNames?: string[];
}

/** One CloudTrail-shaped audit record. */
export interface AuditRecord {
  eventTime: string;
  eventName: string;
  eventSource: string;
  userIdentity?: { arn?: string; type?: string };
  errorCode?: string;
  errorMessage?: string;
  requestID?: string;
  eventID: string;
  sourceIPAddress?: string;
  resources?: { ARN: string }[];
  [k: string]: unknown;
}

/** kmsd's audit read API: the newest records matching `filter`, newest first. */
export function readAuditRecords(
  c: Credentials,
  filter: AuditFilter,
): Promise<{ Records: AuditRecord[]; ScanLimitReached: boolean }> {
  const input: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(filter)) if (v !== undefined && v !== '') input[k] = v;
  return jsonCall(c, 'kms', 'Kmsd.ReadAuditRecords', input);
}

/** CloudHSM v2 DescribeClusters (read-only view of kmsd's HSM clusters). */
export function describeClusters(c: Credentials): Promise<{ Clusters?: Cluster[] }> {
  return jsonCall(c, 'cloudhsm', 'BaldrApiService.DescribeClusters', {});
}

/** A CloudHSM cluster, as DescribeClusters answers. */
export interface Cluster {
  ClusterId: string;
  State: string;
  StateMessage?: string;
  HsmType?: string;
  Hsms?: { HsmId: string; State: string; AvailabilityZone?: string; EniIp?: string; StateMessage?: string }[];
  SubnetMapping?: Record<string, string>;
  CreateTimestamp?: number;
}

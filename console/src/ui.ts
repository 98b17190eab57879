// Shared pieces of the console: the app context every view gets, messages, small helpers.
import { html, nothing, type TemplateResult } from 'lit';
import type { KMSClient } from '@aws-sdk/client-kms';
import { ApiError, toApiError, type Credentials, type Identity } from './api';

/** A message shown at the top of the page: errors in an alert region, results in a status one. */
export interface Message {
  kind: 'error' | 'ok';
  code?: string;
  text: string;
}

/** What views get: the signed-in session, navigation, messages and re-rendering. */
export interface Ctx {
  creds: Credentials;
  identity: Identity;
  kms: KMSClient;
  /** Re-renders the page. */
  update(): void;
  /** Goes to a route (`#/keys/...`). */
  go(hash: string): void;
  /** Runs an action: shows "working", then its error (never as success) or `done`'s text. */
  run<T>(what: string, action: () => Promise<T>, done?: (result: T) => string | void): Promise<T | undefined>;
  /** The current message. */
  message: Message | null;
  busy: string | null;
}

/** Renders the current message. */
export function messageView(m: Message | null): TemplateResult | typeof nothing {
  if (!m) return nothing;
  if (m.kind === 'error') {
    return html`<div class="message error" role="alert" data-testid="error">
      <strong>${m.code ? `${m.code}: ` : 'Error: '}</strong><span>${m.text}</span>
    </div>`;
  }
  return html`<div class="message ok" role="status" data-testid="status">${m.text}</div>`;
}

/** An error shown in place of a section that could not be loaded. */
export function inlineError(e: unknown): TemplateResult {
  const err = toApiError(e);
  return html`<p class="inline-error" role="alert"><strong>${err.code}:</strong> ${err.message}</p>`;
}

/** The outcome of a read that may fail (shown per section). */
export type Loaded<T> = { ok: true; value: T } | { ok: false; error: ApiError };

/** Runs a read, keeping its error instead of throwing. */
export async function settle<T>(p: Promise<T>): Promise<Loaded<T>> {
  try {
    return { ok: true, value: await p };
  } catch (e) {
    return { ok: false, error: toApiError(e) };
  }
}

/** Text -> bytes (UTF-8). */
export const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
/** Bytes -> text (UTF-8, invalid sequences replaced). */
export const fromUtf8 = (b: Uint8Array): string => new TextDecoder().decode(b);

/** Bytes -> base64. */
export function toBase64(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  return btoa(s);
}

/** Base64 -> bytes, or an error naming the field. */
export function fromBase64(s: string, field: string): Uint8Array {
  try {
    const bin = atob(s.replace(/\s+/g, ''));
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  } catch {
    throw new ApiError('ValidationError', `${field} is not valid base64`);
  }
}

/** A date for tables (local time, to the second). */
export function when(d: Date | number | string | undefined): string {
  if (d === undefined || d === null || d === '') return '—';
  const date = d instanceof Date ? d : new Date(typeof d === 'number' && d < 1e12 ? d * 1000 : d);
  return isNaN(date.getTime()) ? String(d) : date.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

/** The value of a form field by name, trimmed. */
export function field(form: HTMLFormElement, name: string): string {
  const el = form.elements.namedItem(name) as HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement | null;
  return el ? el.value.trim() : '';
}

/** Whether a checkbox of a form is checked. */
export function checked(form: HTMLFormElement, name: string): boolean {
  const el = form.elements.namedItem(name) as HTMLInputElement | null;
  return !!el?.checked;
}

/** A key state as a badge. */
export function stateBadge(state: string | undefined): TemplateResult {
  const s = state || 'Unknown';
  return html`<span class="badge state-${s.toLowerCase()}">${s}</span>`;
}

/**
 * Where the app finds the user's Supabase access token, without shipping supabase-js (see docs/frontend.md):
 * a token the person pasted (kept for this tab only, in sessionStorage), else the session that
 * supabase-js itself stores in localStorage (`sb-<project>-auth-token`) when the user signed in on this origin.
 */

export const PASTED_TOKEN_KEY = "canvalo.accessToken";
const SUPABASE_SESSION_KEY = /^sb-[A-Za-z0-9-]+-auth-token$/;

export interface TokenStore {
  read(): string | null;
  save(token: string): void;
  clear(): void;
}

function supabaseSessionToken(storage: Storage, nowSeconds: number): string | null {
  for (let index = 0; index < storage.length; index += 1) {
    const key = storage.key(index);
    if (!key || !SUPABASE_SESSION_KEY.test(key)) {
      continue;
    }
    try {
      const session: unknown = JSON.parse(storage.getItem(key) ?? "");
      if (!session || typeof session !== "object") {
        continue;
      }
      const { access_token: token, expires_at: expiresAt } = session as Record<string, unknown>;
      const expired = typeof expiresAt === "number" && expiresAt <= nowSeconds;
      if (typeof token === "string" && token !== "" && !expired) {
        return token;
      }
    } catch {
      // Another library's value under a similar key: not a session.
    }
  }
  return null;
}

export function browserTokenStore(
  tabStorage: Storage,
  supabaseStorage: Storage,
  now: () => number = () => Date.now() / 1000,
): TokenStore {
  return {
    read: () => tabStorage.getItem(PASTED_TOKEN_KEY) || supabaseSessionToken(supabaseStorage, now()),
    save: (token) => tabStorage.setItem(PASTED_TOKEN_KEY, token),
    clear: () => tabStorage.removeItem(PASTED_TOKEN_KEY),
  };
}

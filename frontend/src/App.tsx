import { type FormEvent, useCallback, useEffect, useState } from "react";
import { type FetchLike, type Health, type Me, fetchHealth, fetchMe } from "./api";
import type { AppConfig } from "./config";
import type { TokenStore } from "./session";

type HealthState =
  | { readonly state: "checking" }
  | { readonly state: "healthy"; readonly health: Health }
  | { readonly state: "unhealthy"; readonly message: string };

type MeState =
  | { readonly state: "signed-out" }
  | { readonly state: "loading" }
  | { readonly state: "ok"; readonly me: Me }
  | { readonly state: "error"; readonly message: string };

export interface AppProps {
  readonly config: AppConfig;
  readonly fetchImpl: FetchLike;
  readonly tokens: TokenStore;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function HealthPanel({ health, onRetry }: { health: HealthState; onRetry: () => void }) {
  return (
    <section aria-labelledby="health-title">
      <h2 id="health-title">Backend health</h2>
      <p data-testid="health" data-state={health.state} role={health.state === "unhealthy" ? "alert" : "status"}>
        {health.state === "checking" && "Checking…"}
        {health.state === "healthy" && `Healthy (environment: ${health.health.environment})`}
        {health.state === "unhealthy" && `Unavailable: ${health.message}`}
      </p>
      <button type="button" onClick={onRetry} disabled={health.state === "checking"}>
        Check again
      </button>
    </section>
  );
}

function MePanel({ me, token, onToken }: { me: MeState; token: string | null; onToken: (token: string | null) => void }) {
  const [draft, setDraft] = useState("");
  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (draft.trim() !== "") {
      onToken(draft.trim());
      setDraft("");
    }
  };
  return (
    <section aria-labelledby="me-title">
      <h2 id="me-title">Your account</h2>
      {token === null ? (
        <form onSubmit={submit}>
          <label>
            Supabase access token{" "}
            <input type="password" autoComplete="off" value={draft} onChange={(event) => setDraft(event.target.value)} />
          </label>{" "}
          <button type="submit">Use token</button>
        </form>
      ) : (
        <button type="button" onClick={() => onToken(null)}>
          Forget token
        </button>
      )}
      <div data-testid="me" data-state={me.state}>
        {me.state === "signed-out" && <p>Not signed in: paste an access token to call /api/v1/me.</p>}
        {me.state === "loading" && <p role="status">Loading…</p>}
        {me.state === "error" && <p role="alert">Could not load your account: {me.message}</p>}
        {me.state === "ok" && <pre>{JSON.stringify(me.me, null, 2)}</pre>}
      </div>
    </section>
  );
}

export function App({ config, fetchImpl, tokens }: AppProps) {
  const [health, setHealth] = useState<HealthState>({ state: "checking" });
  const [token, setToken] = useState<string | null>(() => tokens.read());
  const [me, setMe] = useState<MeState>({ state: "signed-out" });

  const checkHealth = useCallback(() => {
    let current = true;
    setHealth({ state: "checking" });
    fetchHealth(config.apiUrl, fetchImpl).then(
      (answer) => {
        if (!current) return;
        setHealth(
          answer.status === "ok"
            ? { state: "healthy", health: answer }
            : { state: "unhealthy", message: `the API reports status "${answer.status}"` },
        );
      },
      (error: unknown) => current && setHealth({ state: "unhealthy", message: errorMessage(error) }),
    );
    return () => {
      current = false;
    };
  }, [config.apiUrl, fetchImpl]);

  useEffect(checkHealth, [checkHealth]);

  useEffect(() => {
    if (token === null) {
      setMe({ state: "signed-out" });
      return undefined;
    }
    let current = true;
    setMe({ state: "loading" });
    fetchMe(config.apiUrl, token, fetchImpl).then(
      (answer) => current && setMe({ state: "ok", me: answer }),
      (error: unknown) => current && setMe({ state: "error", message: errorMessage(error) }),
    );
    return () => {
      current = false;
    };
  }, [config.apiUrl, fetchImpl, token]);

  const changeToken = (next: string | null) => {
    if (next === null) {
      tokens.clear();
    } else {
      tokens.save(next);
    }
    setToken(next === null ? tokens.read() : next);
  };

  return (
    <main>
      <header>
        <h1>Canvalo</h1>
        <p>
          Stage: <strong data-testid="stage">{config.stage}</strong> · API:{" "}
          <code data-testid="api-url">{config.apiUrl === "" ? "this site (/api/*)" : config.apiUrl}</code>
        </p>
      </header>
      <HealthPanel health={health} onRetry={checkHealth} />
      <MePanel me={me} token={token} onToken={changeToken} />
    </main>
  );
}

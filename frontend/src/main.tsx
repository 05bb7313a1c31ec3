import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { App } from "./App";
import { readConfig } from "./config";
import { browserTokenStore } from "./session";
import "./styles.css";

const root = createRoot(document.getElementById("root") as HTMLElement);
try {
  const config = readConfig(import.meta.env);
  root.render(
    <StrictMode>
      <App
        config={config}
        fetchImpl={(input, init) => fetch(input, init)}
        tokens={browserTokenStore(window.sessionStorage, window.localStorage)}
      />
    </StrictMode>,
  );
} catch (error) {
  // A build without its stage's configuration must say so instead of showing a blank page.
  root.render(
    <p role="alert" data-testid="config-error">
      This build is misconfigured: {error instanceof Error ? error.message : String(error)}
    </p>,
  );
}

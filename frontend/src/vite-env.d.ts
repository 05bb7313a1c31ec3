/// <reference types="vite/client" />

interface ImportMetaEnv {
  /** The API's origin, or "" for the page's own origin; set per stage by `make frontend STAGE=...`. */
  readonly VITE_API_URL?: string;
  readonly VITE_STAGE?: string;
}

interface ImportMeta {
  readonly env: ImportMetaEnv;
}

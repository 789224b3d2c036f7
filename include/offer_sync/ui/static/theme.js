// Offer Sync page: follow the Airflow UI's light/dark mode. Loaded in <head>, before the body is
// drawn, so the page never flashes in the wrong colours.
//
// Airflow 3's UI keeps the mode with next-themes: the choice ("light", "dark" or "system") in
// localStorage under "theme", and the resolved mode as a class ("light"/"dark") on its <html>.
// The page is shown in a same-origin iframe of that UI, so it can read both: the parent's class
// first (the mode actually shown around us, "system" already resolved), then the stored choice
// (the page opened on its own), then the browser's prefers-color-scheme. It keeps following: a
// MutationObserver on the parent's <html>, the storage event (fired here when the UI saves a new
// choice) and the media query's change event.
"use strict";

(() => {
  const root = document.documentElement;
  const media = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;

  function parentRoot() {
    try {
      if (window.parent !== window && window.parent.document) return window.parent.document.documentElement;
    } catch (_) { /* another origin: not Airflow's UI */ }
    return null;
  }
  function current() {
    const parent = parentRoot();
    if (parent) {
      if (parent.classList.contains("dark")) return "dark";
      if (parent.classList.contains("light")) return "light";
    }
    let stored = null;
    try { stored = window.localStorage.getItem("theme"); } catch (_) { /* storage blocked */ }
    if (stored === "dark" || stored === "light") return stored;
    return media && media.matches ? "dark" : "light";
  }
  function apply() {
    const theme = current();
    if (root.dataset.theme !== theme) {
      root.dataset.theme = theme;
      root.style.colorScheme = theme;
      document.dispatchEvent(new CustomEvent("offersync:theme", { detail: theme }));
    }
  }

  apply();
  const parent = parentRoot();
  if (parent && window.MutationObserver) {
    new MutationObserver(apply).observe(parent, { attributes: true, attributeFilter: ["class", "style"] });
  }
  window.addEventListener("storage", (event) => { if (event.key === null || event.key === "theme") apply(); });
  if (media && media.addEventListener) media.addEventListener("change", apply);
})();

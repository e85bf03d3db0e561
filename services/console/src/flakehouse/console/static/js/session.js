// Signing in and out. The token goes to the server once, which keeps it in an http-only cookie;
// this page never stores it (no localStorage, no URL) and clears the box after sending it.
import * as api from './api.js';
import { byTestId, show } from './dom.js';

// Shows the page when signed in, the sign-in form otherwise; calls onSignedIn(session) each
// time the person signs in (and at start when the cookie is still good).
export function startSession(onSignedIn) {
  const signInSection = document.getElementById('sign-in');
  const page = document.getElementById('page');
  const loading = document.getElementById('loading');
  const form = byTestId('sign-in-form');
  const input = byTestId('token-input');
  const refusal = byTestId('sign-in-error');
  const state = byTestId('session-state');

  function showSignIn() {
    show(loading, false);
    show(page, false);
    show(state, false);
    show(signInSection, true);
    input.focus();
  }

  function signedIn(session) {
    show(loading, false);
    show(signInSection, false);
    show(refusal, false);
    show(page, true);
    show(state, true);
    onSignedIn(session);
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    show(refusal, false);
    const button = byTestId('sign-in');
    button.disabled = true;
    try {
      const session = await api.signIn(token);
      input.value = '';
      signedIn(session);
    } catch (error) {
      refusal.textContent = `Not signed in: ${error.message}`;
      show(refusal, true);
      input.select();
    } finally {
      button.disabled = false;
    }
  });

  byTestId('sign-out').addEventListener('click', async () => {
    try {
      await api.signOut();
    } finally {
      showSignIn();
    }
  });

  window.addEventListener(api.UNAUTHENTICATED_EVENT, showSignIn);

  // Signed out is an answer ({signed_in: false}); 401 means the cookie's token is no longer
  // valid (revoked, or the cluster's tokens were replaced).
  api.getSession().then((session) => (session.signed_in ? signedIn(session) : showSignIn()), (error) => {
    if (error.status !== 401) {
      // The console is up but cannot check the token (query service down…): say so.
      refusal.textContent = `Cannot check the session: ${api.describeError(error)}`;
      show(refusal, true);
    }
    showSignIn();
  });
}

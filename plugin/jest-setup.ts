// What jsdom lacks and @grafana/ui's components ask for: none of it is
// what the tests check.
import '@testing-library/jest-dom';
import { configure } from '@testing-library/react';

// The machine the tests run on may be loaded: the find* queries wait for
// what they look for up to 10 s, not 1 s.
configure({ asyncUtilTimeout: 10_000 });

Object.defineProperty(window, 'matchMedia', {
  writable: true,
  value: (query: string) => ({
    matches: false,
    media: query,
    onchange: null,
    addListener: () => {},
    removeListener: () => {},
    addEventListener: () => {},
    removeEventListener: () => {},
    dispatchEvent: () => false,
  }),
});

// Grafana measures text on a canvas to size inputs; jsdom has no canvas.
Object.defineProperty(HTMLCanvasElement.prototype, 'getContext', {
  writable: true,
  value: () => ({
    font: '',
    measureText: (text: string) => ({ width: text.length * 7 }),
  }),
});

class NoResizeObserver {
  observe() {}
  unobserve() {}
  disconnect() {}
}
Object.defineProperty(window, 'ResizeObserver', { writable: true, value: NoResizeObserver });

class NoIntersectionObserver extends NoResizeObserver {
  root = null;
  rootMargin = '';
  thresholds = [];
  takeRecords() {
    return [];
  }
}
Object.defineProperty(window, 'IntersectionObserver', { writable: true, value: NoIntersectionObserver });

// @grafana/ui's icons load their SVG after the first render, outside any
// act(); React's warning about that update says nothing about this
// plugin, so only it is left out of the output.
const consoleError = console.error;
console.error = (...args: unknown[]) => {
  const [first, second] = args;
  if (typeof first === 'string' && first.includes('not wrapped in act') && (second === 'InlineSVG' || second === 'Icon')) {
    return;
  }
  consoleError(...args);
};

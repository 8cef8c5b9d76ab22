import { matchers, withMatcher } from './selector';

describe('withMatcher', () => {
  it.each([
    ['', 'job', 'api', '{job="api"}'],
    ['{}', 'job', 'api', '{job="api"}'],
    ['{a="x"}', 'job', 'api', '{a="x", job="api"}'],
    ['{job="old", a="x"}', 'job', 'api', '{a="x", job="api"}'],
    ['{job=~"o.*", a="x"}', 'job', 'api', '{a="x", job="api"}'],
    ['{a="x,y", b!="z"}', 'job', 'a"b', '{a="x,y", b!="z", job="a\\"b"}'],
    ['{a="x", job="api"}', 'job', '', '{a="x"}'],
    ['{jobs="x"}', 'job', 'api', '{jobs="x", job="api"}'],
  ])('%s with %s=%s is %s', (sel, label, value, want) => {
    expect(withMatcher(sel, label, value)).toBe(want);
  });
});

describe('matchers', () => {
  it('keeps commas and escaped quotes inside values', () => {
    expect(matchers('{a="1,2", b="say \\"hi, there\\"", c=~"x"}')).toEqual([
      'a="1,2"',
      'b="say \\"hi, there\\""',
      'c=~"x"',
    ]);
  });
});

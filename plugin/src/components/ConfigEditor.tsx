import React, { ChangeEvent } from 'react';
import { DataSourcePluginOptionsEditorProps } from '@grafana/data';
import { InlineField, Input, SecretInput, Stack } from '@grafana/ui';

import { AiopsOptions, AiopsSecureOptions } from '../types';

type Props = DataSourcePluginOptionsEditorProps<AiopsOptions, AiopsSecureOptions>;

const LABEL_WIDTH = 16;
const INPUT_WIDTH = 48;

/** urlProblem says what is wrong with the aiops URL, as the backend's settings check would. */
export function urlProblem(raw: string): string | undefined {
  if (raw.trim() === '') {
    return 'Set the URL of aiops, e.g. http://aiops:9090';
  }
  try {
    const u = new URL(raw.trim());
    if ((u.protocol !== 'http:' && u.protocol !== 'https:') || u.host === '') {
      return `${raw} is not an http(s) URL with a host`;
    }
  } catch {
    return `${raw} is not an http(s) URL with a host`;
  }
  return undefined;
}

/**
 * The data source's settings: the URL of aiops, the token (kept in
 * secureJsonData, shown as configured once saved, with a reset) and the
 * request timeout.
 */
export function ConfigEditor({ options, onOptionsChange }: Props) {
  const { jsonData, secureJsonFields } = options;
  const secureJsonData = options.secureJsonData ?? {};
  const problem = urlProblem(options.url ?? '');

  const onURL = (e: ChangeEvent<HTMLInputElement>) => onOptionsChange({ ...options, url: e.target.value });

  const onTimeout = (e: ChangeEvent<HTMLInputElement>) => {
    const n = Number.parseInt(e.target.value, 10);
    onOptionsChange({
      ...options,
      jsonData: { ...jsonData, timeoutSeconds: Number.isFinite(n) && n > 0 ? n : undefined },
    });
  };

  const onToken = (e: ChangeEvent<HTMLInputElement>) =>
    onOptionsChange({ ...options, secureJsonData: { ...secureJsonData, token: e.target.value } });

  const onResetToken = () =>
    onOptionsChange({
      ...options,
      secureJsonFields: { ...secureJsonFields, token: false },
      secureJsonData: { ...secureJsonData, token: '' },
    });

  return (
    <Stack direction="column" gap={1}>
      <InlineField
        label="URL"
        labelWidth={LABEL_WIDTH}
        interactive
        tooltip="The URL of aiops's main listener; Grafana's server reaches it, not the browser"
        invalid={problem !== undefined && (options.url ?? '') !== ''}
        error={problem}
      >
        <Input
          id="config-editor-url"
          aria-label="URL"
          value={options.url ?? ''}
          placeholder="http://aiops:9090"
          width={INPUT_WIDTH}
          onChange={onURL}
        />
      </InlineField>
      <InlineField
        label="Token"
        labelWidth={LABEL_WIDTH}
        interactive
        tooltip="A token with the read scope: aiops token create --name grafana --scopes read"
      >
        <SecretInput
          id="config-editor-token"
          aria-label="Token"
          required
          isConfigured={Boolean(secureJsonFields?.token)}
          value={secureJsonData.token ?? ''}
          placeholder="a token with the read scope"
          width={INPUT_WIDTH}
          onReset={onResetToken}
          onChange={onToken}
        />
      </InlineField>
      <InlineField label="Timeout (s)" labelWidth={LABEL_WIDTH} tooltip="Bounds each request to aiops (default 30)">
        <Input
          id="config-editor-timeout"
          aria-label="Timeout in seconds"
          type="number"
          min={1}
          value={jsonData.timeoutSeconds ?? ''}
          placeholder="30"
          width={16}
          onChange={onTimeout}
        />
      </InlineField>
    </Stack>
  );
}

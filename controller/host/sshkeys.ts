// SSH key pairs the controller makes (its own key for reconnects; tests' keys).
// ssh2 is CommonJS: under plain Node ESM (the built daemon) only some names are static exports; utils is not
import ssh2 from 'ssh2';
import { TStackError } from '../../shared/errors.js';

const { utils } = ssh2;

export interface SshKeyPair {
  /** OpenSSH private key (PEM armour). */
  private: string;
  /** `ssh-ed25519 AAAA… comment` */
  public: string;
}

/**
 * A new ed25519 key pair that ssh2 itself can read back. ssh2 1.17's generateKeyPairSync strips
 * leading zero bytes of the public key, so about 1 pair in 256 is malformed (mscdex/ssh2#1513) —
 * a controller that drew one could never log in to its hosts again. Such pairs are drawn again.
 */
export function newEd25519KeyPair(comment?: string): SshKeyPair {
  for (let i = 0; i < 32; i++) {
    const k = utils.generateKeyPairSync('ed25519', comment ? { comment } : {});
    if (!(utils.parseKey(k.private) instanceof Error) && !(utils.parseKey(k.public) instanceof Error)) return { private: k.private, public: k.public };
  }
  throw new TStackError('INTERNAL', 'could not generate a readable ed25519 key pair');
}
